//! A live interpreter for the runtime modules' unit tests that inspect a
//! real process: started with a script that prints one line and then
//! waits on stdin, so the test runs while the interpreter is up and idle.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running interpreter, ended (stdin closed, then reaped) when dropped.
pub struct Interpreter(Child);

impl Interpreter {
    /// Starts `program` with `args` and returns once it printed its first
    /// line: the script's, so the interpreter and its libraries are loaded.
    pub fn start(program: &str, args: &[&str]) -> Interpreter {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("reading {program}'s first line: {e}"));
        Interpreter(child)
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Interpreter {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}
