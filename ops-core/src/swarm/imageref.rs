//! Image references for `bump`: what a person typed (a bare tag or a full reference), checked
//! before anything reaches the engine, and the image it resolves to against the current one.
//!
//! The grammar is the one of `distribution/reference` (the Go package the Docker engine and
//! CLI use). It is checked by the `oci-spec` crate (`oci_spec::distribution::Reference`,
//! youki-dev/oci-spec-rs: the OCI specifications maintained for the youki runtime and used by
//! oci-client and others), with only its `distribution` feature. It was chosen over small
//! single-author parsers because it is maintained, widely used, and a faithful port of the
//! Go grammar (lowercase repository path, `[\w][\w.-]{0,127}` tags, validated digests, the
//! 255-character name limit). Its errors are coarse ("invalid reference format"), so when it
//! refuses a reference this module looks at the text once more only to NAME what is wrong
//! (whitespace, a character such as `;` or `$`, uppercase, a leading `-`): the decision is
//! always the parser's.

use std::fmt;
use std::str::FromStr;

use oci_spec::distribution::Reference;

/// What a person asked to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageTarget {
    /// `v2` or `:v2`: the current repository with this tag.
    Tag(String),
    /// A reference with a repository (`repo:tag`, `registry/repo@sha256:…`), taken as written.
    Reference(String),
}

/// Why a reference was refused. The text names the problem and is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("the image reference is empty")]
    Empty,
    #[error("`{shown}` contains whitespace or control characters")]
    Whitespace { shown: String },
    #[error("the tag is empty (write `:v2` or `v2`)")]
    EmptyTag,
    #[error("tag `{shown}` is not valid: {reason}")]
    InvalidTag { shown: String, reason: String },
    #[error("repository name `{shown}` must be lowercase")]
    Uppercase { shown: String },
    #[error("`{shown}` is not a valid image reference: {reason}")]
    Invalid { shown: String, reason: String },
    #[error("the service's current image `{shown}` is not a reference a tag can be applied to")]
    CurrentImage { shown: String },
}

const TAG_RULE: &str =
    "a tag is 1 to 128 letters, digits, `_`, `.` and `-`, and starts with a letter, digit or `_`";

/// At most 64 characters, control characters escaped: user text inside an error message.
fn shown(s: &str) -> String {
    crate::base::shown(s, crate::base::Shown::Escaped, 64)
}

/// The first character that can appear nowhere in a reference.
fn foreign_char(s: &str) -> Option<char> {
    s.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/' | '@' | '+'))
    })
}

impl ImageTarget {
    /// Classifies and checks what a person typed. `:x` and anything without `/`, `:` or `@`
    /// is a tag; the rest is a full reference.
    pub fn parse(input: &str) -> Result<ImageTarget, ImageRefError> {
        if input.is_empty() {
            return Err(ImageRefError::Empty);
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ImageRefError::Whitespace {
                shown: shown(input),
            });
        }
        if let Some(tag) = input.strip_prefix(':') {
            return check_tag(tag).map(ImageTarget::Tag);
        }
        if !input.contains(['/', ':', '@']) {
            return check_tag(input).map(ImageTarget::Tag);
        }
        check_reference(input).map(|_| ImageTarget::Reference(input.to_string()))
    }

    /// The image to deploy when the service runs `current`: a tag replaces the tag of the
    /// current image (its digest pin dropped, registry and repository kept as written); a full
    /// reference is used as written.
    pub fn resolve(&self, current: &str) -> Result<String, ImageRefError> {
        match self {
            ImageTarget::Reference(r) => Ok(r.clone()),
            ImageTarget::Tag(tag) => {
                let parsed =
                    Reference::from_str(current).map_err(|_| ImageRefError::CurrentImage {
                        shown: shown(current),
                    })?;
                // The grammar puts the digest after the only `@`, the tag after the last `:`
                // of what precedes it; the parser said which tag (if any) was written.
                let without_digest = current.split('@').next().unwrap_or(current);
                let name = parsed
                    .tag()
                    .and_then(|t| without_digest.strip_suffix(&format!(":{t}")))
                    .unwrap_or(without_digest);
                let image = format!("{name}:{tag}");
                check_reference(&image)?;
                Ok(image)
            }
        }
    }
}

impl fmt::Display for ImageTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageTarget::Tag(t) => write!(f, ":{t}"),
            ImageTarget::Reference(r) => f.write_str(r),
        }
    }
}

/// A tag is valid when `x:{tag}` parses with exactly that tag and no digest.
fn check_tag(tag: &str) -> Result<String, ImageRefError> {
    if tag.is_empty() {
        return Err(ImageRefError::EmptyTag);
    }
    let ok = Reference::from_str(&format!("x:{tag}"))
        .map(|r| r.tag() == Some(tag) && r.digest().is_none())
        .unwrap_or(false);
    if ok {
        return Ok(tag.to_string());
    }
    let reason = if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        format!("`{}` is not allowed ({TAG_RULE})", c.escape_debug())
    } else if tag.starts_with(['.', '-']) {
        format!("it starts with `{}` ({TAG_RULE})", &tag[..1])
    } else if tag.len() > 128 {
        format!("it is {} characters long ({TAG_RULE})", tag.len())
    } else {
        TAG_RULE.to_string()
    };
    Err(ImageRefError::InvalidTag {
        shown: shown(tag),
        reason,
    })
}

fn check_reference(input: &str) -> Result<Reference, ImageRefError> {
    let err = match Reference::from_str(input) {
        Ok(r) => return Ok(r),
        Err(e) => e,
    };
    if let Some(c) = foreign_char(input) {
        return Err(ImageRefError::Invalid {
            shown: shown(input),
            reason: format!(
                "`{}` is not allowed in an image reference",
                c.escape_debug()
            ),
        });
    }
    // The repository path is what precedes the tag and digest; a registry host may have
    // uppercase letters, the path may not.
    let before_digest = input.split('@').next().unwrap_or(input);
    let (host, path) = match before_digest.split_once('/') {
        Some((h, p)) if h.contains(['.', ':']) || h == "localhost" => (Some(h), p),
        _ => (None, before_digest),
    };
    let repo = match path.rsplit_once(':') {
        Some((r, _tag)) => r,
        None => path,
    };
    if repo.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ImageRefError::Uppercase { shown: shown(repo) });
    }
    let reason = if input.starts_with(['-', '.', '_']) || host.is_some_and(|h| h.starts_with('-')) {
        format!("it starts with `{}`", &input[..1])
    } else {
        err.to_string()
    };
    Err(ImageRefError::Invalid {
        shown: shown(input),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn tags_and_references_are_told_apart() {
        assert_eq!(ImageTarget::parse("v2"), Ok(ImageTarget::Tag("v2".into())));
        assert_eq!(ImageTarget::parse(":v2"), Ok(ImageTarget::Tag("v2".into())));
        assert_eq!(
            ImageTarget::parse("1.2.3_rc-1"),
            Ok(ImageTarget::Tag("1.2.3_rc-1".into()))
        );
        for r in [
            "app:v2",
            "ghcr.io/sprocket/web:main",
            "localhost:5000/web",
            "registry.example.com:5000/team/web:v2",
        ] {
            assert_eq!(
                ImageTarget::parse(r),
                Ok(ImageTarget::Reference(r.into())),
                "{r}"
            );
        }
        let pinned = format!("web@{DIGEST}");
        assert_eq!(
            ImageTarget::parse(&pinned),
            Ok(ImageTarget::Reference(pinned.clone()))
        );
    }

    #[test]
    fn invalid_input_is_refused_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("a b", "whitespace"),
            ("v2\n", "whitespace"),
            (":", "tag is empty"),
            ("--yes", "starts with `-`"),
            (".hidden", "starts with `.`"),
            (";rm", "`;` is not allowed"),
            ("$(x)", "`$` is not allowed"),
            ("UPPER:case", "`UPPER` must be lowercase"),
            ("ghcr.io/Team/web:v2", "`Team/web` must be lowercase"),
            ("web:v2;rm -rf", "whitespace"),
            ("web:v2;rm", "`;` is not allowed"),
            ("web@sha256:abc", "not a valid image reference"),
            ("-x/web:v2", "starts with `-`"),
            ("web:", "not a valid image reference"),
        ];
        for (input, want) in cases {
            let err = ImageTarget::parse(input).expect_err(input);
            assert!(err.to_string().contains(want), "{input:?}: {err}");
        }
        let long = "a".repeat(129);
        let err = ImageTarget::parse(&long).unwrap_err();
        assert!(err.to_string().contains("129 characters"), "{err}");
        assert!(
            err.to_string().contains('…'),
            "long input is shortened: {err}"
        );
    }

    #[test]
    fn a_tag_replaces_the_tag_and_drops_the_digest() {
        let tag = ImageTarget::parse("v2").unwrap();
        let cases = [
            ("web:main", "web:v2"),
            ("web", "web:v2"),
            (&format!("web:main@{DIGEST}") as &str, "web:v2"),
            (&format!("web@{DIGEST}"), "web:v2"),
            ("localhost:5000/team/web", "localhost:5000/team/web:v2"),
            ("localhost:5000/team/web:main", "localhost:5000/team/web:v2"),
            ("ghcr.io/sprocket/web:latest", "ghcr.io/sprocket/web:v2"),
            ("docker.io/library/web:1", "docker.io/library/web:v2"),
        ];
        for (current, want) in cases {
            assert_eq!(tag.resolve(current).as_deref(), Ok(want), "{current}");
        }
        assert!(matches!(
            tag.resolve("NOT VALID"),
            Err(ImageRefError::CurrentImage { .. })
        ));
    }

    #[test]
    fn a_full_reference_is_taken_as_written() {
        let r = ImageTarget::parse("other/app:v3").unwrap();
        assert_eq!(
            r.resolve(&format!("web:main@{DIGEST}")).unwrap(),
            "other/app:v3"
        );
        assert_eq!(r.to_string(), "other/app:v3");
        assert_eq!(ImageTarget::parse("v2").unwrap().to_string(), ":v2");
    }
}
