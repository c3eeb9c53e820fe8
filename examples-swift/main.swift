// hello: start a libsipsimple application, print every notification, stop.
// Build: see the README ("Swift"): the generated bindings in bindings/swift plus
// libsipsimple built for the host.
import Foundation
import SipSimple

final class Printer: NotificationObserver {
    private let lock = NSLock()
    private(set) var names: [String] = []

    func handleNotification(notification: Notification) {
        print("\(notification.name()) from \(notification.senderKind())#\(notification.senderId()) \(notification.dataJson())")
        lock.lock()
        names.append(notification.name())
        lock.unlock()
    }
}

print("libsipsimple \(version())")
let center = NotificationCenter()
let printer = Printer()
let app = SipApplication()
let token = center.addObserver(observer: printer, name: nil, senderId: app.id())
do {
    try app.start(storage: Storage.memory())
    print("state: \(app.state())")
} catch {
    print("start failed: \(error)")
    exit(1)
}
app.stop()  // returns after SIPApplicationDidEnd was delivered
_ = center.removeObserver(token: token)
print("\(printer.names.count) notifications")
exit(printer.names.count == 4 ? 0 : 1)
