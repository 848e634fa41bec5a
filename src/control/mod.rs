//! The control socket: `kelpie run` serves an HTTP/1.1 + JSON API on a Unix
//! domain socket, and every control command (`status`, `start`, `reload`,
//! …) is a client of it. `protocol` holds the bodies both sides share.

pub mod protocol;
pub mod wait;
