//! The REPL's meta-commands (`.help`, `.schema NAME`, `.format json`...):
//! their names, their help, and parsing a typed line into a [`Meta`].

use std::path::PathBuf;

use super::print::Format;

/// How fast replayed files are read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Speed {
    /// As fast as they can be read.
    Max,
    /// Event time advances this many times faster than the wall clock.
    Times(f64),
}

impl std::fmt::Display for Speed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Speed::Max => f.write_str("max"),
            Speed::Times(x) => write!(f, "{x}x"),
        }
    }
}

/// A parsed meta-command.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Meta {
    Help,
    Inputs,
    Schema(String),
    Explain(String),
    /// `None`: show the current one.
    Format(Option<Format>),
    Timing(Option<bool>),
    Speed(Option<Speed>),
    Save(PathBuf),
    Load(PathBuf),
    Sql(String),
    Quit,
}

/// Every meta-command, its argument and what it does (`.help`, completion).
pub(crate) const COMMANDS: &[(&str, &str, &str)] = &[
    (".help", "", "this list"),
    (".inputs", "", "the bound and declared inputs and outputs"),
    (
        ".schema",
        "NAME",
        "the columns of an input and their types (inferred from the data)",
    ),
    (
        ".explain",
        "QUERY;",
        "the operator graph of a query, without running it",
    ),
    (
        ".format",
        "table|json|csv",
        "how rows are printed (table by default)",
    ),
    (
        ".timing",
        "on|off",
        "add events per second to the summary after each query",
    ),
    (
        ".speed",
        "10x|1x|max",
        "pace replayed files by event time (max: as fast as possible)",
    ),
    (
        ".save",
        "FILE",
        "write the session's declarations and statements as a job for `iotql run`",
    ),
    (
        ".load",
        "FILE",
        "take the CREATE INPUT/OUTPUT declarations of a job file",
    ),
    (
        ".sql",
        "SELECT ...;",
        "plain SQL (DataFusion) over outputs already written: CSV, JSON lines, Parquet, SQLite",
    ),
    (".quit", "", "leave (Ctrl+D too)"),
];

/// `10x`, `0.5x`, `10`, `max`.
pub(crate) fn parse_speed(text: &str) -> Result<Speed, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("max") {
        return Ok(Speed::Max);
    }
    let number = t.strip_suffix(['x', 'X']).unwrap_or(t);
    match number.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(Speed::Times(x)),
        _ => Err(format!(
            "`{t}` is not a speed: write how many times faster than real time (10x, 1x) or max"
        )),
    }
}

fn on_off(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("`{text}`: write on or off")),
    }
}

/// Parses a meta-command line (with its query for `.sql` and `.explain`).
pub(crate) fn parse(line: &str) -> Result<Meta, String> {
    let line = line.trim();
    let (command, arg) = match line.split_once(char::is_whitespace) {
        Some((c, a)) => (c, a.trim()),
        None => (line, ""),
    };
    let command = command.trim_end_matches(';').to_ascii_lowercase();
    let query = || arg.trim_end().trim_end_matches(';').trim().to_string();
    let needs = |what: &str| -> Result<String, String> {
        if arg.trim_end_matches(';').trim().is_empty() {
            Err(format!("{command} needs {what}"))
        } else {
            Ok(arg.trim_end_matches(';').trim().to_string())
        }
    };
    let optional = |arg: &str| (!arg.is_empty()).then(|| arg.to_string());
    Ok(match command.as_str() {
        ".help" | ".h" | ".?" => Meta::Help,
        ".inputs" | ".outputs" => Meta::Inputs,
        ".schema" => Meta::Schema(needs("an input name, e.g. .schema readings")?),
        ".explain" => {
            needs("a query, e.g. .explain SELECT * FROM readings;")?;
            Meta::Explain(query())
        }
        ".format" => Meta::Format(optional(arg).map(|a| a.parse()).transpose()?),
        ".timing" => Meta::Timing(optional(arg).map(|a| on_off(&a)).transpose()?),
        ".speed" => Meta::Speed(optional(arg).map(|a| parse_speed(&a)).transpose()?),
        ".save" => Meta::Save(needs("a file, e.g. .save job.asaql")?.into()),
        ".load" => Meta::Load(needs("a job file, e.g. .load queries/fleet_pipeline.asaql")?.into()),
        ".sql" => {
            needs("a query, e.g. .sql SELECT * FROM hourly LIMIT 10;")?;
            Meta::Sql(query())
        }
        ".quit" | ".exit" | ".q" => Meta::Quit,
        other => {
            let known: Vec<&str> = COMMANDS.iter().map(|c| c.0).collect();
            let hint = iotql_dsl::suggest::closest(other, known.iter().copied()).map_or_else(
                || " (.help lists them)".to_string(),
                |c| format!(": did you mean {c}?"),
            );
            return Err(format!("unknown command `{other}`{hint}"));
        }
    })
}

/// The text of `.help`.
pub(crate) fn help() -> String {
    let mut out = String::from(
        "Statements end with `;` and may span lines: CREATE [REFERENCE] INPUT/OUTPUT declarations,\n\
         and queries. A SELECT without INTO prints its rows here as its windows close; Ctrl+C stops it.\n\n",
    );
    for (name, arg, what) in COMMANDS {
        let usage = if arg.is_empty() {
            name.to_string()
        } else {
            format!("{name} {arg}")
        };
        out.push_str(&format!("  {usage:<26} {what}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_commands_parse_with_their_arguments() {
        assert_eq!(parse(".help"), Ok(Meta::Help));
        assert_eq!(
            parse(".schema readings"),
            Ok(Meta::Schema("readings".into()))
        );
        assert_eq!(parse(".format json"), Ok(Meta::Format(Some(Format::Json))));
        assert_eq!(parse(".format"), Ok(Meta::Format(None)));
        assert_eq!(parse(".timing on"), Ok(Meta::Timing(Some(true))));
        assert_eq!(
            parse(".speed 10x"),
            Ok(Meta::Speed(Some(Speed::Times(10.0))))
        );
        assert_eq!(parse(".speed max"), Ok(Meta::Speed(Some(Speed::Max))));
        assert_eq!(
            parse(".save out/job.asaql"),
            Ok(Meta::Save("out/job.asaql".into()))
        );
        assert_eq!(
            parse(".sql SELECT *\nFROM hourly;"),
            Ok(Meta::Sql("SELECT *\nFROM hourly".into()))
        );
        assert_eq!(
            parse(".explain SELECT * FROM r;"),
            Ok(Meta::Explain("SELECT * FROM r".into()))
        );
        assert_eq!(parse(".quit"), Ok(Meta::Quit));
    }

    #[test]
    fn bad_meta_commands_say_what_to_write() {
        assert!(
            parse(".schema")
                .unwrap_err()
                .contains("needs an input name")
        );
        assert!(
            parse(".format xml")
                .unwrap_err()
                .contains("table, json or csv")
        );
        assert!(parse(".speed fast").unwrap_err().contains("not a speed"));
        assert!(parse(".timing maybe").unwrap_err().contains("on or off"));
        assert!(parse(".sql ;").unwrap_err().contains("needs a query"));
        assert!(
            parse(".shema r")
                .unwrap_err()
                .contains("did you mean .schema?")
        );
        assert_eq!(parse_speed("0.5x"), Ok(Speed::Times(0.5)));
        assert!(parse_speed("0x").is_err());
    }
}
