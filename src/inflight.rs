//! Identical questions in flight share one upstream query, as in Unbound: when a popular name expires, the
//! clients that ask before the answer is back wait for that answer instead of each sending their own. The
//! upstream sees one query, not one per client, and an off-path spoofer of a plain-UDP upstream gets one
//! query to race, not many (the "birthday" attack).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// The questions being fetched now, by key, each with whoever waits for its result.
pub struct Inflight<T> {
    fetching: Mutex<Fetching<T>>,
}

/// Keys are client-chosen names: a seeded hash (as the cache uses), not SipHash, which cost more than the
/// rest of the merging. An entry's list stays empty (no allocation) until someone else asks the same.
type Fetching<T> = HashMap<Box<[u8]>, Vec<oneshot::Sender<T>>, foldhash::fast::RandomState>;

impl<T> Default for Inflight<T> {
    fn default() -> Self {
        Inflight {
            fetching: Mutex::new(HashMap::default()),
        }
    }
}

impl<T: Clone> Inflight<T> {
    /// The result of `fetch` for `key`: run here if no one is fetching that key, else the other fetch's
    /// result. If that other fetch is dropped before it ends (its client went away at shutdown), this
    /// one runs `fetch` itself.
    pub async fn run<F, Fut>(&self, key: Box<[u8]>, fetch: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let waiting = {
            let mut fetching = self.lock();
            match fetching.get_mut(&key) {
                Some(waiters) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    fetching.insert(key.clone(), Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = waiting {
            return match rx.await {
                Ok(v) => v,
                Err(_) => fetch().await,
            };
        }
        // Taken out of the map however this ends: if this future is dropped while fetching, the waiters'
        // senders go with the entry and each of them fetches itself.
        let mut leave = Leave {
            map: self,
            key: Some(key),
        };
        let v = fetch().await;
        for tx in leave.now() {
            let _ = tx.send(v.clone());
        }
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fetching<T>> {
        // A panic elsewhere while holding the lock leaves the map as it was: keep using it.
        self.fetching.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when nothing is being fetched (no entry left behind).
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Removes a finished (or abandoned) fetch from the map.
struct Leave<'a, T: Clone> {
    map: &'a Inflight<T>,
    key: Option<Box<[u8]>>,
}

impl<T: Clone> Leave<'_, T> {
    /// Takes the entry out; returns those waiting for it.
    fn now(&mut self) -> Vec<oneshot::Sender<T>> {
        match self.key.take() {
            Some(key) => self.map.lock().remove(&key).unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

impl<T: Clone> Drop for Leave<'_, T> {
    fn drop(&mut self) {
        self.now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn one_fetch_serves_everyone_waiting_and_other_keys_fetch_their_own() {
        let inflight = Arc::new(Inflight::<u32>::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let ask = |key: &'static [u8], v: u32| {
            let (inflight, fetches) = (inflight.clone(), fetches.clone());
            tokio::spawn(async move {
                inflight
                    .run(key.into(), || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        v
                    })
                    .await
            })
        };
        let same: Vec<_> = (0..5).map(|i| ask(b"a", i)).collect();
        let other = ask(b"b", 99);
        let mut got = Vec::new();
        for h in same {
            got.push(h.await.expect("task"));
        }
        assert_eq!(other.await.expect("task"), 99);
        assert!(got.iter().all(|&v| v == got[0]), "{got:?}");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert!(inflight.is_empty());
        // Once done, the next ask fetches again.
        assert_eq!(ask(b"a", 7).await.expect("task"), 7);
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_follower_fetches_itself_when_the_leader_is_dropped() {
        let inflight = Arc::new(Inflight::<u32>::default());
        let leader = {
            let inflight = inflight.clone();
            tokio::spawn(async move {
                inflight
                    .run(b"k".as_slice().into(), || async {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        1
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let follower = {
            let inflight = inflight.clone();
            tokio::spawn(async move { inflight.run(b"k".as_slice().into(), || async { 2 }).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        assert_eq!(follower.await.expect("task"), 2);
        assert!(inflight.is_empty());
    }
}
