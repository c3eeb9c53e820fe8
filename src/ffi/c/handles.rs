//! Opaque handles for the C ABI.
//!
//! A handle is not a pointer to the object: it is a process-unique number, never
//! reused, looked up in a table. A NULL, freed, forged or wrong-type handle is
//! therefore an error code, never undefined behaviour. Lookups clone an `Arc`
//! so no table lock is held while the object is used.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use once_cell::sync::Lazy;
use parking_lot::Mutex;

use crate::ffi::SipsimpleStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Application,
    Storage,
    Notification,
    Account,
    Session,
}

struct Entry {
    kind: Kind,
    object: Arc<dyn Any + Send + Sync>,
}

static TABLE: Lazy<Mutex<BTreeMap<u64, Entry>>> = Lazy::new(|| Mutex::new(BTreeMap::new()));
/// Starts high and steps by 16 so handles look like aligned pointers to C tools
/// and never collide with small integers passed by mistake.
static NEXT: AtomicU64 = AtomicU64::new(0x5150_0000_0000);

pub(crate) fn insert<T: Any + Send + Sync, H>(kind: Kind, object: Arc<T>) -> *mut H {
    let id = NEXT.fetch_add(16, Ordering::Relaxed);
    TABLE.lock().insert(id, Entry { kind, object });
    std::ptr::without_provenance_mut(id as usize)
}

fn id_of<H>(handle: *const H) -> Result<u64, SipsimpleStatus> {
    if handle.is_null() {
        Err(SipsimpleStatus::NullArgument)
    } else {
        Ok(handle.addr() as u64)
    }
}

pub(crate) fn get<T: Any + Send + Sync, H>(
    handle: *const H,
    kind: Kind,
) -> Result<Arc<T>, SipsimpleStatus> {
    let id = id_of(handle)?;
    let table = TABLE.lock();
    let entry = table.get(&id).ok_or(SipsimpleStatus::InvalidHandle)?;
    if entry.kind != kind {
        return Err(SipsimpleStatus::WrongHandleType);
    }
    entry
        .object
        .clone()
        .downcast::<T>()
        .map_err(|_| SipsimpleStatus::WrongHandleType)
}

pub(crate) fn remove<H>(
    handle: *const H,
    kind: Kind,
) -> Result<Arc<dyn Any + Send + Sync>, SipsimpleStatus> {
    let id = id_of(handle)?;
    let mut table = TABLE.lock();
    match table.get(&id) {
        None => Err(SipsimpleStatus::InvalidHandle),
        Some(e) if e.kind != kind => Err(SipsimpleStatus::WrongHandleType),
        // Present: checked just above under the same lock.
        Some(_) => Ok(table
            .remove(&id)
            .map(|e| e.object)
            .expect("entry checked above")),
    }
}
