//! The functions of the ASA language: which names exist and what kind of
//! function each is. The checker uses it to refuse unknown functions (with
//! a suggestion) and to tell aggregates from scalar functions.

use crate::ast::{FunctionCall, WindowKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    /// One value per row.
    Scalar,
    /// One value per window and group: valid only with a GROUP BY window,
    /// or as an analytic function with OVER (... LIMIT DURATION ...).
    Aggregate,
    /// Looks back over earlier events: LAG, LAST, ISFIRST, anomaly detection.
    Analytic,
    /// A window of GROUP BY.
    Window,
    /// `System.Timestamp()`, `System.Window()`.
    System,
    /// `udf.name(...)` / `uda.name(...)`: user-defined, checked at run time.
    UserDefined,
}

const AGGREGATES: &[&str] = &[
    "AVG",
    "COLLECT",
    "COLLECTTOP",
    "COUNT",
    "MAX",
    "MIN",
    "PERCENTILE_CONT",
    "PERCENTILE_DISC",
    "STDEV",
    "STDEVP",
    "SUM",
    "TOPONE",
    "VAR",
    "VARP",
];

const ANALYTICS: &[&str] = &[
    "ANOMALYDETECTION_CHANGEPOINT",
    "ANOMALYDETECTION_SPIKEANDDIP",
    "ISFIRST",
    "LAG",
    "LAST",
];

const SCALARS: &[&str] = &[
    // date and time
    "DATEADD",
    "DATEDIFF",
    "DATENAME",
    "DATEPART",
    "DATETIMEFROMPARTS",
    "DAY",
    "MONTH",
    "YEAR",
    // string
    "CHARINDEX",
    "CONCAT",
    "LEFT",
    "LEN",
    "LOWER",
    "LTRIM",
    "PATINDEX",
    "REGEXMATCH",
    "REPLACE",
    "RIGHT",
    "RTRIM",
    "SUBSTRING",
    "TRIM",
    "UPPER",
    // math
    "ABS",
    "ACOS",
    "ASIN",
    "ATAN",
    "ATN2",
    "CEILING",
    "COS",
    "COT",
    "DEGREES",
    "EXP",
    "FLOOR",
    "LOG",
    "LOG10",
    "PI",
    "POWER",
    "RADIANS",
    "ROUND",
    "SIGN",
    "SIN",
    "SQRT",
    "SQUARE",
    "TAN",
    // conversion and NULLs
    "COALESCE",
    "ISNULL",
    // records and arrays
    "GETARRAYELEMENT",
    "GETARRAYELEMENTS",
    "GETARRAYLENGTH",
    "GETMETADATAPROPERTYVALUE",
    "GETRECORDPROPERTIES",
    "GETRECORDPROPERTYVALUE",
    // geospatial
    "CREATELINESTRING",
    "CREATEPOINT",
    "CREATEPOLYGON",
    "ST_DISTANCE",
    "ST_INTERSECTS",
    "ST_OVERLAPS",
    "ST_WITHIN",
];

/// Functions whose first argument is a date part (`DATEDIFF(minute, a, b)`).
const DATE_PART_FIRST: &[&str] = &["DATEADD", "DATEDIFF", "DATENAME", "DATEPART", "ISFIRST"];

/// Whether the call named `upper` (upper case) takes a date part first.
pub fn takes_date_part_first(upper: &str) -> bool {
    DATE_PART_FIRST.contains(&upper)
}

/// What kind of function `call` names, or `None` when ASA has no such function.
pub fn kind_of(call: &FunctionCall) -> Option<FunctionKind> {
    match call.name.as_slice() {
        [one] => kind_of_name(&one.value),
        [ns, name] if ns.matches("System") => {
            (name.matches("Timestamp") || name.matches("Window")).then_some(FunctionKind::System)
        }
        [ns, _] if ns.matches("udf") || ns.matches("uda") => Some(FunctionKind::UserDefined),
        _ => None,
    }
}

/// What kind of function the single-part `name` is.
pub fn kind_of_name(name: &str) -> Option<FunctionKind> {
    let upper = name.to_ascii_uppercase();
    let upper = upper.as_str();
    if AGGREGATES.contains(&upper) {
        Some(FunctionKind::Aggregate)
    } else if ANALYTICS.contains(&upper) {
        Some(FunctionKind::Analytic)
    } else if SCALARS.contains(&upper) {
        Some(FunctionKind::Scalar)
    } else if WindowKind::from_name(name).is_some() || upper == "WINDOWS" {
        Some(FunctionKind::Window)
    } else {
        None
    }
}

/// The ASA name for a function that other SQL dialects spell differently.
pub fn other_dialect(name: &str) -> Option<&'static str> {
    const NAMES: &[(&str, &str)] = &[
        ("AVERAGE", "AVG"),
        ("MEAN", "AVG"),
        ("STDDEV", "STDEV"),
        ("STDDEV_SAMP", "STDEV"),
        ("STDDEV_POP", "STDEVP"),
        ("VARIANCE", "VAR"),
        ("VAR_SAMP", "VAR"),
        ("VAR_POP", "VARP"),
        ("LENGTH", "LEN"),
        ("CHAR_LENGTH", "LEN"),
        ("SUBSTR", "SUBSTRING"),
        ("CEIL", "CEILING"),
        ("POW", "POWER"),
        ("LN", "LOG"),
        ("IFNULL", "COALESCE"),
        ("NVL", "COALESCE"),
        ("NOW", "System.Timestamp"),
        ("GETDATE", "System.Timestamp"),
        ("CURRENT_TIMESTAMP", "System.Timestamp"),
        ("DATE_ADD", "DATEADD"),
        ("DATE_DIFF", "DATEDIFF"),
        ("TIMESTAMPDIFF", "DATEDIFF"),
        ("DATE_PART", "DATEPART"),
        ("FIRST_VALUE", "TopOne"),
        ("LAST_VALUE", "LAST"),
        ("ARRAY_AGG", "Collect"),
        ("PERCENTILE", "PERCENTILE_CONT"),
    ];
    NAMES
        .iter()
        .find(|(other, _)| other.eq_ignore_ascii_case(name))
        .map(|&(_, asa)| asa)
}

/// Every known single-part function name, for suggestions.
pub fn names() -> impl Iterator<Item = &'static str> {
    AGGREGATES
        .iter()
        .chain(ANALYTICS)
        .chain(SCALARS)
        .copied()
        .chain(WindowKind::ALL.iter().map(|k| k.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_case_insensitive() {
        assert_eq!(kind_of_name("avg"), Some(FunctionKind::Aggregate));
        assert_eq!(kind_of_name("Lag"), Some(FunctionKind::Analytic));
        assert_eq!(kind_of_name("dateDiff"), Some(FunctionKind::Scalar));
        assert_eq!(kind_of_name("Tumbling"), Some(FunctionKind::Window));
        assert_eq!(kind_of_name("AVERAGE"), None);
    }
}
