//! Client-side commands of the binary (they talk to a server over HTTP).

pub mod gate;
