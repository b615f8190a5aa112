//! Identifiers: resource ids in Tencent's shapes, request ids, generated secrets.

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The id of a new function instance (unique while fnlb runs): it names the instance's cgroup and channel.
pub fn next_instance_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A resource id such as `lb-6efswuxa`: the prefix, a dash and eight lowercase letters or digits.
pub fn resource_id(prefix: &str) -> String {
    format!("{prefix}-{}", random_string(ID_ALPHABET, 8))
}

/// A request id: a random UUID, as Tencent's `RequestId`. The random bytes come from the operating system in
/// batches (one call per 256 ids, per thread): a request id is made for every request.
pub fn request_id() -> String {
    thread_local! {
        static POOL: std::cell::RefCell<(Box<[u8; 4096]>, usize)> =
            std::cell::RefCell::new((Box::new([0; 4096]), 4096));
    }
    let bytes = POOL.with_borrow_mut(|(buf, used)| {
        if *used == buf.len() {
            getrandom::fill(&mut buf[..]).expect("the operating system's random source is available");
            *used = 0;
        }
        let bytes: [u8; 16] = buf[*used..*used + 16].try_into().expect("sixteen bytes");
        *used += 16;
        bytes
    });
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// A random string of `len` characters from `alphabet` (uniform: bytes past the last full multiple are redrawn).
pub fn random_string(alphabet: &[u8], len: usize) -> String {
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).expect("the operating system's random source is available");
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// A new account's `SecretId` (`AKID` and 32 characters) and `SecretKey` (32 characters), as Tencent issues them.
pub fn new_credentials() -> (String, String) {
    (format!("AKID{}", random_string(SECRET_ALPHABET, 32)), random_string(SECRET_ALPHABET, 32))
}

/// A random decimal string of `len` digits not starting with 0 (`AppId`, `Uin`).
pub fn random_digits(len: usize) -> String {
    let first = random_string(b"123456789", 1);
    first + &random_string(b"0123456789", len - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_version_4_uuids_across_batches() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| request_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 4, "{id}");
            assert_eq!(id.len(), 36);
        }
    }
}
