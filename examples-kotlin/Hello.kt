// hello: start a libsipsimple application, print every notification, stop.
//
// Build and run (see README): kotlinc Hello.kt ../bindings/kotlin/org/sipsimple/sipsimple.kt
//   -cp jna.jar -include-runtime -d hello.jar
// java -Djna.library.path=../target/debug -cp hello.jar:jna.jar HelloKt
import java.util.concurrent.CopyOnWriteArrayList
import org.sipsimple.*

class Printer : NotificationObserver {
    val names = CopyOnWriteArrayList<String>()

    override fun handleNotification(notification: Notification) {
        println("${notification.name()} from ${notification.senderKind()}#${notification.senderId()} " +
            "${notification.dataJson()} [${Thread.currentThread().name}]")
        names.add(notification.name())
    }
}

fun main() {
    println("libsipsimple ${version()}")
    val center = NotificationCenter()
    val printer = Printer()
    val app = SipApplication()
    val token = center.addObserver(printer, null, app.id())
    app.start(Storage.memory())
    println("state: ${app.state()}")
    try {
        app.start(Storage.memory())
        println("second start did not fail")
        System.exit(1)
    } catch (e: SipSimpleException.InvalidState) {
        println("second start refused: ${e.message}")
    }
    app.stop() // returns after SIPApplicationDidEnd was delivered
    center.removeObserver(token)
    val expected = listOf("SIPApplicationWillStart", "SIPApplicationDidStart",
        "SIPApplicationWillEnd", "SIPApplicationDidEnd")
    if (printer.names != expected) {
        println("unexpected notifications: ${printer.names}")
        System.exit(1)
    }
    println("${printer.names.size} notifications")
}
