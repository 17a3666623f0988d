//! Exit codes (BSD sysexits), so scripts can tell a bad config from an unreachable engine.

/// A failure that ends the process with a specific code and one clear line on stderr.
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub message: String,
}

impl Exit {
    /// Bad command line or configuration (EX_USAGE).
    pub const USAGE: i32 = 64;
    /// A required service (Docker, Discord) is unavailable (EX_UNAVAILABLE).
    pub const UNAVAILABLE: i32 = 69;
    /// The operating system refused something the process needs, e.g. threads (EX_OSERR).
    pub const OSERR: i32 = 71;
    /// The database cannot be opened or created (EX_CANTCREAT).
    pub const CANTCREAT: i32 = 73;

    pub fn new(code: i32, message: impl Into<String>) -> Exit {
        Exit {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}
