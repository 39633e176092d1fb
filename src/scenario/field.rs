//! [`FieldError`], the error of a scenario field, and the small checks every section
//! uses on its fields (shares, seconds, one-of choices, keys that apply elsewhere).

use std::path::Path;
use std::time::Duration;

use thiserror::Error;

use crate::error::ConfigError;

/// A scenario field that does not validate: its path in the file (`load.rate`,
/// `[[stages]] #2 mode`, `faults[1].kind`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The error as the user sees it: `<file>: <field>: <message>`.
    pub fn in_file(self, shown: &Path) -> ConfigError {
        ConfigError::file(shown, self)
    }

    /// The error of [`crate::load::LoadPlan::validate`] (shared with the CLI): its field,
    /// renamed by `field`, becomes the field; any other error is put on `field("load")`.
    pub(super) fn from_plan(e: ConfigError, field: impl Fn(&str) -> String) -> Self {
        match e {
            ConfigError::Invalid {
                field: name,
                message,
            } => FieldError::new(field(&name), message),
            other => FieldError::new(field("load"), other.to_string()),
        }
    }
}

/// `crate::fault` names its own fields (`faults[2].at_s`).
impl From<crate::fault::Invalid> for FieldError {
    fn from(e: crate::fault::Invalid) -> Self {
        FieldError {
            field: e.field,
            message: e.message,
        }
    }
}

pub(super) fn bad(field: &str, message: impl Into<String>) -> FieldError {
    FieldError::new(field, message)
}

/// A share of operations or queries: absent is 0, and it must be within 0..=1.
pub(super) fn share(field: &str, v: Option<f64>) -> Result<f64, FieldError> {
    let v = v.unwrap_or(0.0);
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(bad(field, format!("must be within 0..=1, got {v}")))
    }
}

pub(super) fn seconds(field: &str, v: f64) -> Result<Duration, FieldError> {
    // try_from also refuses values beyond what a Duration holds (1e20 s), which
    // from_secs_f64 would panic on.
    match Duration::try_from_secs_f64(v) {
        Ok(d) if v.is_finite() => Ok(d),
        _ => Err(bad(
            field,
            format!("must be a number of seconds ≥ 0 and below 1.8e19, got {v}"),
        )),
    }
}

pub(super) fn one_of<'a>(
    field: &str,
    v: Option<&'a str>,
    allowed: &[&'a str],
) -> Result<Option<&'a str>, FieldError> {
    match v {
        Some(s) if !allowed.contains(&s) => Err(bad(
            field,
            format!("{s:?} is not one of {}", allowed.join(", ")),
        )),
        other => Ok(other),
    }
}

/// Fails when a field that only applies to another choice is set.
pub(super) fn only_for(field: &str, set: bool, applies: &str) -> Result<(), FieldError> {
    if set {
        Err(bad(field, format!("only applies to {applies}")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_error_names_the_file_then_the_field() {
        let e = FieldError::new("load.rate", "must be > 0");
        assert_eq!(e.to_string(), "load.rate: must be > 0");
        assert_eq!(
            e.in_file(Path::new("scenarios/t.toml")).to_string(),
            "scenarios/t.toml: load.rate: must be > 0"
        );
    }

    #[test]
    fn a_load_plan_error_keeps_its_flag_as_the_field_renamed() {
        let e = FieldError::from_plan(ConfigError::invalid("load.rate", "bad"), |f| {
            format!("[[stages]] #1 {}", f.trim_start_matches("load."))
        });
        assert_eq!(e, FieldError::new("[[stages]] #1 rate", "bad"));
        let e = FieldError::from_plan(ConfigError::file("f", "odd"), str::to_string);
        assert_eq!(e, FieldError::new("load", "f: odd"));
    }

    #[test]
    fn choices_and_shares_are_checked() {
        assert_eq!(one_of("x", Some("a"), &["a", "b"]), Ok(Some("a")));
        assert_eq!(
            one_of("x", Some("c"), &["a", "b"]).unwrap_err().message,
            "\"c\" is not one of a, b"
        );
        assert_eq!(share("s", None), Ok(0.0));
        assert!(share("s", Some(1.5)).is_err());
        assert!(seconds("d", f64::NAN).is_err());
        assert!(only_for("f", true, "model = \"open\"").is_err());
    }
}
