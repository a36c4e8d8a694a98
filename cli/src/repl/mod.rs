//! `iotql repl`: an interactive shell over live and replayed inputs. Lines
//! are read with rustyline (history in a file, completion, multi-line
//! statements ending with `;`), cut into entries (`statement.rs`) and
//! handed to the [`session::Session`], which runs queries with the shared
//! runner and prints their rows as their windows close (`print.rs`).
//!
//! Ctrl+C while a query runs raises the interrupt flag: the query stops and
//! the prompt comes back. At the prompt rustyline reads in raw mode, so
//! Ctrl+C there only clears the line; Ctrl+D or `.quit` leaves.

/// Writes a line of data on stdout; a closed stdout is not worth a panic
/// in an interactive shell.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod helper;
mod meta;
mod print;
mod session;
mod statement;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{Config, Editor};

pub(crate) use session::ReplOptions;
use session::{Next, Session};
use statement::entries;

const PROMPT: &str = "iotql> ";
const MORE: &str = "   ..> ";

/// `$IOTQL_HISTORY`, else `$XDG_STATE_HOME/iotql/history`, else
/// `~/.local/state/iotql/history`.
fn history_path() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("IOTQL_HISTORY")
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("iotql").join("history")))
        .or_else(|| {
            var("HOME").map(|h| h.join(".local").join("state").join("iotql").join("history"))
        })
}

/// Writes the history, creating its folder on first use; a history that
/// cannot be written is said once and the session goes on.
fn save_history(
    editor: &mut Editor<helper::ReplHelper, FileHistory>,
    path: &Option<PathBuf>,
    warned: &mut bool,
) {
    let Some(path) = path else { return };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = editor.save_history(path)
        && !*warned
    {
        *warned = true;
        eprintln!("history not kept: cannot write {}: {e}", path.display());
    }
}

pub(crate) fn run(options: ReplOptions) -> ExitCode {
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut session = Session::new(options, interrupted.clone());
    let config = Config::builder()
        .auto_add_history(false)
        .max_history_size(10_000);
    let config = match config {
        Ok(c) => c.build(),
        Err(e) => {
            eprintln!("iotql repl: {e}");
            return ExitCode::from(3);
        }
    };
    let mut editor: Editor<helper::ReplHelper, FileHistory> = match Editor::with_config(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("iotql repl: cannot start line editing: {e}");
            return ExitCode::from(3);
        }
    };
    editor.set_helper(Some(helper::ReplHelper::new(session.catalog.clone())));
    // After the editor, which puts a SIGINT handler of its own in place for
    // its lifetime: ours raises the flag that a running query checks. At
    // the prompt the terminal is in raw mode and Ctrl+C is a key, not a
    // signal.
    {
        let flag = interrupted.clone();
        if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
            eprintln!("iotql repl: Ctrl+C cannot stop queries: {e}");
        }
    }
    let history = history_path();
    if let Some(path) = &history
        && path.exists()
        && let Err(e) = editor.load_history(path)
    {
        eprintln!("history not read from {}: {e}", path.display());
    }
    let mut warned = false;
    eprintln!(
        "iotql repl: statements end with `;`; .help lists the commands; Ctrl+C stops a query, Ctrl+D leaves.\nrefused events go to {}",
        session.dead_letter_path().display()
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { PROMPT } else { MORE };
        match editor.readline(prompt) {
            Ok(line) => {
                buffer.push_str(&line);
                buffer.push('\n');
                let (done, rest) = entries(&buffer);
                if !done.is_empty() {
                    let typed = buffer[..buffer.len() - rest.len()].trim();
                    if !typed.is_empty() {
                        let _ = editor.add_history_entry(typed);
                        save_history(&mut editor, &history, &mut warned);
                    }
                }
                buffer = rest;
                for entry in &done {
                    if session.handle(entry) == Next::Quit {
                        return ExitCode::SUCCESS;
                    }
                }
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("iotql repl: {e}");
                return ExitCode::from(3);
            }
        }
    }
}
