//! CoRE Link Format (RFC 6690, content format 40) as LwM2M uses it.
//!
//! Two layers:
//!
//! * Generic links: [`decode_links`] / [`encode_links`] turn
//!   `</1/0>,</3/0>;ver=1.1,</>;rt="oma.lwm2m";ct=110` into [`Link`]s (target
//!   plus parameters, quoted values unescaped) and back. The parser never
//!   panics, bounds its work with [`LinkLimits`] and reports typed
//!   [`LinkError`]s with byte offsets.
//! * LwM2M meaning: the Register/Update payload ([`RegistrationLinks`], TS Core
//!   §6.2.1), Discover output ([`encode_discover`] / [`decode_discover`], TS
//!   Core 1.0 §5.4.2) and Bootstrap-Discover output ([`BootstrapDiscover`], TS
//!   Core 1.2 §6.1.7.3).
//!
//! Why there is no `decode`/`encode` of [`Node`]s here: a link-format payload
//! carries links to resources and their attributes, never resource values. LwM2M
//! uses content format 40 only for the registration payload and the
//! (Bootstrap-)Discover responses. [`decode`] and [`encode`] exist so a
//! dispatcher over [`ContentFormat`] can treat every format alike; they always
//! answer [`FormatError::UnsupportedFormat`] (4.15 for a Write carrying
//! link format). A CoRE-link *resource value* (`Value::CoreLnk`) is a string
//! and goes through the value formats; [`decode_links`] can parse it when
//! its content matters.
//!
//! Leniency (Postel, where the TS itself is loose): whitespace around `,` and
//! `;` is skipped (the TS examples write `</>;ct=110, </1/0>`), a trailing `/`
//! on an LwM2M path is accepted (`</0/1/>` in the TS 1.2 Bootstrap-Discover
//! examples), attribute values may be quoted or not (`ver="1.1"` as Leshan
//! sends it), and Bootstrap-Discover accepts the pre-1.2 form
//! `lwm2m="1.0",</0/0>...` which is not RFC 6690 (TS Core 1.2 §6.1.7.3 note:
//! "LwM2M Servers MAY accept this particular error"). The encoders never
//! produce any of these forms.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::fmt::Write as _;

use crate::format::{ContentFormat, FormatError};
use crate::model::{
    AttributeError, AttributeName, Attributes, ModelLookup, Node, Path, PathError, Version,
};

/// Bounds on what [`decode_links_with`] accepts, so a peer cannot make us
/// allocate or loop without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLimits {
    /// Longest payload, bytes.
    pub max_len: usize,
    /// Most links in one payload.
    pub max_links: usize,
    /// Most parameters on one link.
    pub max_params: usize,
}

impl LinkLimits {
    /// 64 KiB, 4096 links, 32 parameters per link: room for a registration of
    /// a large gateway (each link is at least 5 bytes, `</1>,`) while keeping
    /// the worst case small.
    pub const DEFAULT: LinkLimits = LinkLimits {
        max_len: 64 * 1024,
        max_links: 4096,
        max_params: 32,
    };
}

impl Default for LinkLimits {
    fn default() -> Self {
        LinkLimits::DEFAULT
    }
}

/// The value of a link parameter, remembering whether it was quoted: both
/// mean the same text, but writing it back the same way keeps round trips
/// exact and `ct="110 112"` needs the quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// `name=value` (an RFC 6690 `ptoken`).
    Token(String),
    /// `name="value"`, unescaped.
    Quoted(String),
}

impl ParamValue {
    /// The text of the value, quotes and escapes removed.
    pub fn as_str(&self) -> &str {
        match self {
            ParamValue::Token(s) | ParamValue::Quoted(s) => s,
        }
    }
}

/// One link parameter: `;name`, `;name=value` or `;name="value"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkParam {
    /// Parameter name (`rt`, `ct`, `ver`, `pmin`...).
    pub name: String,
    /// Value, if any.
    pub value: Option<ParamValue>,
}

impl LinkParam {
    /// `;name` without value.
    pub fn flag(name: &str) -> LinkParam {
        LinkParam {
            name: name.to_string(),
            value: None,
        }
    }
    /// `;name=value`.
    pub fn token(name: &str, value: &str) -> LinkParam {
        LinkParam {
            name: name.to_string(),
            value: Some(ParamValue::Token(value.to_string())),
        }
    }
    /// `;name="value"`.
    pub fn quoted(name: &str, value: &str) -> LinkParam {
        LinkParam {
            name: name.to_string(),
            value: Some(ParamValue::Quoted(value.to_string())),
        }
    }
    /// The value's text (unquoted), if any.
    pub fn value(&self) -> Option<&str> {
        self.value.as_ref().map(ParamValue::as_str)
    }
}

/// One link: `<target>` and its parameters in the order they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The URI reference between `<` and `>`.
    pub target: String,
    /// Parameters.
    pub params: Vec<LinkParam>,
}

impl Link {
    /// A link to `target` without parameters.
    pub fn new(target: &str) -> Link {
        Link {
            target: target.to_string(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter (builder style).
    pub fn with(mut self, param: LinkParam) -> Link {
        self.params.push(param);
        self
    }

    /// The first parameter called `name` (ASCII case-insensitive, as RFC 8288
    /// parameter names are).
    pub fn param(&self, name: &str) -> Option<&LinkParam> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// Why a link-format payload could not be parsed, interpreted or written.
/// Every decoding error is a peer error (4.00, [`LinkError::coap_code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkError {
    /// The payload is longer than [`LinkLimits::max_len`].
    TooLong {
        /// Payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More links than [`LinkLimits::max_links`].
    TooManyLinks {
        /// The limit.
        max: usize,
    },
    /// A link with more parameters than [`LinkLimits::max_params`].
    TooManyParams {
        /// Byte offset of the parameter over the limit.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not UTF-8.
    InvalidUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// Text that does not follow the link-format grammar.
    Syntax {
        /// Byte offset.
        offset: usize,
        /// What was expected there.
        expected: &'static str,
    },
    /// A `<` whose target never ends with `>`.
    UnterminatedTarget {
        /// Offset of the `<`.
        offset: usize,
    },
    /// A quoted value without its closing `"`.
    UnterminatedQuote {
        /// Offset of the opening `"`.
        offset: usize,
    },
    /// `<>`.
    EmptyTarget {
        /// Offset of the `<`.
        offset: usize,
    },
    /// The links cannot be written (invalid target, name or token, or LwM2M
    /// content that has no link form); says what.
    NotEncodable(&'static str),
    /// A link target that is not an LwM2M path (`</37777777777>`, `</65535>`, `</a>`).
    InvalidPath {
        /// Index of the link in the payload.
        link: usize,
        /// What is wrong with the path.
        error: PathError,
    },
    /// A registration link that is not an object or object instance.
    UnexpectedDepth {
        /// Index of the link.
        link: usize,
    },
    /// The same path twice.
    DuplicatePath {
        /// Index of the second occurrence.
        link: usize,
    },
    /// A `ct` value that is not a (list of) content-format number(s).
    InvalidContentFormat {
        /// Index of the link.
        link: usize,
    },
    /// An `rt="oma.lwm2m"` link whose target is not a valid alternate path
    /// (or a second such link).
    InvalidAlternatePath {
        /// Index of the link.
        link: usize,
    },
    /// A known LwM2M attribute with an invalid value.
    Attribute {
        /// Index of the link.
        link: usize,
        /// The attribute error.
        error: AttributeError,
    },
}

impl LinkError {
    /// The CoAP response code for a payload that fails to decode: 4.00.
    pub fn coap_code(&self) -> (u8, u8) {
        (4, 0)
    }
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::TooLong { len, max } => {
                write!(f, "link-format payload of {len} bytes exceeds the limit of {max}")
            }
            LinkError::TooManyLinks { max } => write!(f, "more than {max} links"),
            LinkError::TooManyParams { offset, max } => {
                write!(f, "link has more than {max} parameters (at byte {offset})")
            }
            LinkError::InvalidUtf8 { offset } => {
                write!(f, "link-format payload is not UTF-8 (byte {offset})")
            }
            LinkError::Syntax { offset, expected } => {
                write!(f, "link-format syntax error at byte {offset}: expected {expected}")
            }
            LinkError::UnterminatedTarget { offset } => {
                write!(f, "link target opened at byte {offset} has no closing '>'")
            }
            LinkError::UnterminatedQuote { offset } => {
                write!(f, "quoted value opened at byte {offset} has no closing '\"'")
            }
            LinkError::EmptyTarget { offset } => {
                write!(f, "empty link target '<>' at byte {offset}")
            }
            LinkError::NotEncodable(why) => write!(f, "cannot write link format: {why}"),
            LinkError::InvalidPath { link, error } => {
                write!(f, "link #{link}: target is not an LwM2M path: {error}")
            }
            LinkError::UnexpectedDepth { link } => write!(
                f,
                "link #{link}: registration lists objects and object instances only (expected /O or /O/I)"
            ),
            LinkError::DuplicatePath { link } => write!(f, "link #{link}: path listed twice"),
            LinkError::InvalidContentFormat { link } => write!(
                f,
                "link #{link}: ct must be a content-format number or a quoted space-separated list of them"
            ),
            LinkError::InvalidAlternatePath { link } => write!(
                f,
                "link #{link}: rt=\"oma.lwm2m\" target must be one alternate path like /lwm2m without numeric segments"
            ),
            LinkError::Attribute { link, error } => write!(f, "link #{link}: {error}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LinkError {}

impl From<LinkError> for FormatError {
    fn from(e: LinkError) -> FormatError {
        match e {
            LinkError::TooLong { max, .. } => FormatError::InvalidLength { offset: max },
            LinkError::TooManyLinks { .. } => FormatError::InvalidLength { offset: 0 },
            LinkError::TooManyParams { offset, .. } => FormatError::InvalidLength { offset },
            LinkError::InvalidUtf8 { .. } => FormatError::InvalidUtf8,
            LinkError::Syntax { offset, expected } => FormatError::Syntax { offset, expected },
            LinkError::UnterminatedTarget { offset } | LinkError::UnterminatedQuote { offset } => {
                FormatError::Truncated { offset }
            }
            LinkError::EmptyTarget { offset } => FormatError::Syntax {
                offset,
                expected: "a non-empty link target",
            },
            LinkError::NotEncodable(why) => FormatError::NotRepresentable(why),
            LinkError::InvalidPath { .. }
            | LinkError::UnexpectedDepth { .. }
            | LinkError::DuplicatePath { .. }
            | LinkError::InvalidAlternatePath { .. } => FormatError::InvalidPath,
            LinkError::InvalidContentFormat { .. } => FormatError::InvalidValue {
                what: "ct link parameter",
            },
            LinkError::Attribute { .. } => FormatError::InvalidValue {
                what: "LwM2M attribute in a link",
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Common content-format API
// ---------------------------------------------------------------------------

/// Link format carries links, not values (see the module docs): always
/// [`FormatError::UnsupportedFormat`].
pub fn decode(
    _payload: &[u8],
    _path: &Path,
    _models: &dyn ModelLookup,
) -> Result<Node, FormatError> {
    Err(FormatError::UnsupportedFormat(ContentFormat::LINK_FORMAT))
}

/// Link format carries links, not values (see the module docs): always
/// [`FormatError::UnsupportedFormat`].
pub fn encode(_node: &Node, _path: &Path, _out: &mut Vec<u8>) -> Result<(), FormatError> {
    Err(FormatError::UnsupportedFormat(ContentFormat::LINK_FORMAT))
}

// ---------------------------------------------------------------------------
// Character classes (RFC 6690 §2, RFC 3986 §2)
// ---------------------------------------------------------------------------

/// Characters of an RFC 3986 URI-reference (unreserved, reserved and `%`).
fn is_target_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

/// RFC 6690 `parmname` (RFC 5987 `attr-char` minus `*`).
fn is_parmname_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b)
}

/// RFC 6690 `ptokenchar`.
fn is_ptoken_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'()*+-./:<=>?@[]^_`{|}~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    limits: LinkLimits,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    /// Consumes bytes while `f` holds; returns them.
    fn take_while(&mut self, f: fn(u8) -> bool) -> &str {
        let start = self.pos;
        while self.peek().is_some_and(f) {
            self.pos += 1;
        }
        // Only ASCII bytes pass the classes above, so both ends are char boundaries.
        self.s.get(start..self.pos).unwrap_or("")
    }

    fn list(&mut self, bare_first: bool) -> Result<Vec<Link>, LinkError> {
        let mut links = Vec::new();
        self.skip_ws();
        if self.peek().is_none() {
            return Ok(links);
        }
        loop {
            if links.len() >= self.limits.max_links {
                return Err(LinkError::TooManyLinks {
                    max: self.limits.max_links,
                });
            }
            let link = if bare_first && links.is_empty() && self.peek() != Some(b'<') {
                // Pre-1.2 Bootstrap-Discover: `lwm2m="1.0",</0/0>...`, parameters
                // without a target; they describe the root.
                let mut params = Vec::new();
                params.push(self.param()?);
                self.params(&mut params)?;
                Link {
                    target: "/".to_string(),
                    params,
                }
            } else {
                self.link()?
            };
            links.push(link);
            self.skip_ws();
            match self.peek() {
                None => return Ok(links),
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(_) => {
                    return Err(LinkError::Syntax {
                        offset: self.pos,
                        expected: "',' between links or ';' before a parameter",
                    })
                }
            }
        }
    }

    fn link(&mut self) -> Result<Link, LinkError> {
        let open = self.pos;
        if self.peek() != Some(b'<') {
            return Err(LinkError::Syntax {
                offset: open,
                expected: "'<' starting a link",
            });
        }
        self.pos += 1;
        let target = self.take_while(is_target_char).to_string();
        match self.peek() {
            Some(b'>') => self.pos += 1,
            None => return Err(LinkError::UnterminatedTarget { offset: open }),
            Some(_) => {
                return Err(LinkError::Syntax {
                    offset: self.pos,
                    expected: "URI-reference character or '>' closing the target",
                })
            }
        }
        if target.is_empty() {
            return Err(LinkError::EmptyTarget { offset: open });
        }
        let mut params = Vec::new();
        self.params(&mut params)?;
        Ok(Link { target, params })
    }

    /// `*( ";" link-param )`, with optional whitespace around `;`.
    fn params(&mut self, params: &mut Vec<LinkParam>) -> Result<(), LinkError> {
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.peek() != Some(b';') {
                // Whitespace before ',' or the end belongs to the list.
                self.pos = save;
                return Ok(());
            }
            self.pos += 1;
            self.skip_ws();
            if params.len() >= self.limits.max_params {
                return Err(LinkError::TooManyParams {
                    offset: self.pos,
                    max: self.limits.max_params,
                });
            }
            params.push(self.param()?);
        }
    }

    /// `parmname [ "=" ( ptoken / quoted-string ) ]`.
    fn param(&mut self) -> Result<LinkParam, LinkError> {
        let at = self.pos;
        let name = self.take_while(is_parmname_char).to_string();
        if name.is_empty() {
            return Err(LinkError::Syntax {
                offset: at,
                expected: "a parameter name",
            });
        }
        if self.peek() != Some(b'=') {
            return Ok(LinkParam { name, value: None });
        }
        self.pos += 1;
        let value = if self.peek() == Some(b'"') {
            ParamValue::Quoted(self.quoted()?)
        } else {
            let at = self.pos;
            let token = self.take_while(is_ptoken_char);
            if token.is_empty() {
                return Err(LinkError::Syntax {
                    offset: at,
                    expected: "a parameter value (token or quoted string)",
                });
            }
            ParamValue::Token(token.to_string())
        };
        Ok(LinkParam {
            name,
            value: Some(value),
        })
    }

    /// A quoted string starting at the current `"`; `\x` stands for `x`.
    fn quoted(&mut self) -> Result<String, LinkError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self
                .s
                .get(self.pos..)
                .and_then(|r| r.chars().next())
                .ok_or(LinkError::UnterminatedQuote { offset: open })?;
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let e = self
                        .s
                        .get(self.pos..)
                        .and_then(|r| r.chars().next())
                        .ok_or(LinkError::UnterminatedQuote { offset: open })?;
                    self.pos += e.len_utf8();
                    out.push(e);
                }
                c => out.push(c),
            }
        }
    }
}

fn parse(payload: &[u8], limits: &LinkLimits, bare_first: bool) -> Result<Vec<Link>, LinkError> {
    if payload.len() > limits.max_len {
        return Err(LinkError::TooLong {
            len: payload.len(),
            max: limits.max_len,
        });
    }
    let s = core::str::from_utf8(payload).map_err(|e| LinkError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    Parser {
        s,
        pos: 0,
        limits: *limits,
    }
    .list(bare_first)
}

/// Parses a link list with [`LinkLimits::DEFAULT`]. An empty payload is an
/// empty list.
///
/// ```
/// use lwm2m_core::format::link::{decode_links, LinkParam};
/// let links = decode_links(br#"</1/0>,</3/0>;ver=1.1,</>;rt="oma.lwm2m";ct=110"#).unwrap();
/// assert_eq!(links.len(), 3);
/// assert_eq!(links[1].target, "/3/0");
/// assert_eq!(links[1].params, [LinkParam::token("ver", "1.1")]);
/// assert_eq!(links[2].param("rt").and_then(|p| p.value()), Some("oma.lwm2m"));
/// ```
pub fn decode_links(payload: &[u8]) -> Result<Vec<Link>, LinkError> {
    decode_links_with(payload, &LinkLimits::DEFAULT)
}

/// Parses a link list within `limits`.
pub fn decode_links_with(payload: &[u8], limits: &LinkLimits) -> Result<Vec<Link>, LinkError> {
    parse(payload, limits, false)
}

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

fn write_link(link: &Link, out: &mut String) -> Result<(), LinkError> {
    if link.target.is_empty() {
        return Err(LinkError::NotEncodable("empty link target"));
    }
    if !link.target.bytes().all(is_target_char) {
        return Err(LinkError::NotEncodable(
            "link target has a character outside RFC 3986 (percent-encode it)",
        ));
    }
    out.push('<');
    out.push_str(&link.target);
    out.push('>');
    for p in &link.params {
        if p.name.is_empty() || !p.name.bytes().all(is_parmname_char) {
            return Err(LinkError::NotEncodable("invalid link parameter name"));
        }
        out.push(';');
        out.push_str(&p.name);
        match &p.value {
            None => {}
            Some(ParamValue::Token(t)) => {
                if t.is_empty() || !t.bytes().all(is_ptoken_char) {
                    return Err(LinkError::NotEncodable(
                        "unquoted parameter value must be a non-empty RFC 6690 ptoken (quote it)",
                    ));
                }
                out.push('=');
                out.push_str(t);
            }
            Some(ParamValue::Quoted(q)) => {
                out.push_str("=\"");
                for c in q.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    Ok(())
}

/// Writes `links` as text (`,` between links, no whitespace).
pub fn links_to_string(links: &[Link]) -> Result<String, LinkError> {
    let mut out = String::new();
    for (i, link) in links.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_link(link, &mut out)?;
    }
    Ok(out)
}

/// Appends `links` to `out`. On error nothing is appended.
pub fn encode_links(links: &[Link], out: &mut Vec<u8>) -> Result<(), LinkError> {
    let s = links_to_string(links)?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

// ---------------------------------------------------------------------------
// LwM2M: paths in link targets
// ---------------------------------------------------------------------------

/// The LwM2M path of a link target, after removing the alternate path `root`
/// (`/lwm2m/3/0` → `/3/0`) and one trailing `/` (`</0/1/>` in the TS examples).
fn target_path(target: &str, root: Option<&str>) -> Result<Path, PathError> {
    let mut t = target;
    if let Some(rest) = root.and_then(|r| t.strip_prefix(r)) {
        if rest.is_empty() {
            t = "/";
        } else if rest.starts_with('/') {
            t = rest;
        }
    }
    if t.len() > 1 {
        t = t.strip_suffix('/').unwrap_or(t);
    }
    t.parse()
}

/// Normalises an alternate path: `/` → `None`; `/a/b` (or `/a/b/`) → `Some("/a/b")`.
/// Segments must be non-empty and not purely numeric: a numeric segment would
/// be read as an object id (`</12>;rt="oma.lwm2m"` makes `/12/3/0` ambiguous),
/// and TS Transport §6.4.1 does not allow one in the alternate path.
fn normalize_root(target: &str) -> Result<Option<String>, ()> {
    let rest = target.strip_prefix('/').ok_or(())?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(None);
    }
    for seg in rest.split('/') {
        if seg.is_empty() || seg.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        // Only path characters: no query or fragment in an alternate path.
        if seg.bytes().any(|b| matches!(b, b'?' | b'#')) {
            return Err(());
        }
    }
    let mut s = String::with_capacity(rest.len() + 1);
    s.push('/');
    s.push_str(rest);
    Ok(Some(s))
}

fn has_lwm2m_rt(link: &Link) -> bool {
    link.params.iter().any(|p| {
        p.name.eq_ignore_ascii_case("rt")
            && p.value()
                .is_some_and(|v| v.split_ascii_whitespace().any(|t| t == "oma.lwm2m"))
    })
}

/// `ct=110` or `ct="110 112 60"`.
fn parse_content_formats(value: &str, out: &mut Vec<u16>) -> Result<(), ()> {
    let mut any = false;
    for t in value.split_ascii_whitespace() {
        if t.len() > 5 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        out.push(t.parse().map_err(|_| ())?);
        any = true;
    }
    if any {
        Ok(())
    } else {
        Err(())
    }
}

fn content_format_param(cfs: &[u16]) -> LinkParam {
    match cfs {
        [one] => LinkParam::token("ct", &one.to_string()),
        many => {
            let mut s = String::new();
            for (i, c) in many.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                let _ = write!(s, "{c}");
            }
            LinkParam::quoted("ct", &s)
        }
    }
}

// ---------------------------------------------------------------------------
// LwM2M: registration payload
// ---------------------------------------------------------------------------

/// The link-format payload of Register and Update (TS Core 1.2 §6.2.1; the
/// alternate path `rt="oma.lwm2m"` is TS Transport §6.4.1).
///
/// ```
/// use lwm2m_core::format::link::RegistrationLinks;
/// use lwm2m_core::model::{Path, Version};
/// let r = RegistrationLinks::decode(br#"</1/0>,</3/0>;ver=1.1,</>;rt="oma.lwm2m";ct=110"#).unwrap();
/// assert_eq!(r.root, None);
/// assert_eq!(r.content_formats, [110]);
/// assert_eq!(r.objects, [(Path::Instance(1, 0), None), (Path::Instance(3, 0), Some(Version::new(1, 1)))]);
/// let mut out = Vec::new();
/// r.encode(&mut out).unwrap();
/// assert_eq!(out, b"</>;ct=110,</1/0>,</3/0>;ver=1.1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistrationLinks {
    /// Alternate path announced with `rt="oma.lwm2m"` (`Some("/lwm2m")`);
    /// `None` means the default root `/`.
    pub root: Option<String>,
    /// Content formats the client supports beyond the mandatory ones
    /// (`ct=` on the root link), sorted, without duplicates after decoding.
    pub content_formats: Vec<u16>,
    /// Objects (`/O`) and object instances (`/O/I`) with their object
    /// version (`ver`), sorted by path after decoding.
    pub objects: Vec<(Path, Option<Version>)>,
}

impl RegistrationLinks {
    /// Parses a Register/Update payload.
    ///
    /// Rules: the link with `rt="oma.lwm2m"` (at most one) gives the alternate
    /// path; `ct` on the root link (alternate or `</>`) lists content formats;
    /// every other link must be `/O` or `/O/I` (prefixed by the alternate path
    /// or not). Ids above 65534 are errors, never wrapped. Parameters other than
    /// `ver`/`rt`/`ct` are ignored ("MUST NOT be interpreted as an error", TS
    /// Core §6.2.1). Security (/0) and OSCORE (/21) links, which a client
    /// MUST NOT list, are kept: refusing a registration over them would
    /// punish the device for a harmless mistake.
    pub fn decode(payload: &[u8]) -> Result<RegistrationLinks, LinkError> {
        RegistrationLinks::from_links(&decode_links(payload)?)
    }

    /// Interprets already parsed links (see [`RegistrationLinks::decode`]).
    pub fn from_links(links: &[Link]) -> Result<RegistrationLinks, LinkError> {
        let mut root = None;
        let mut root_idx = None;
        for (i, l) in links.iter().enumerate() {
            if has_lwm2m_rt(l) {
                if root_idx.is_some() {
                    return Err(LinkError::InvalidAlternatePath { link: i });
                }
                root = normalize_root(&l.target)
                    .map_err(|()| LinkError::InvalidAlternatePath { link: i })?;
                root_idx = Some(i);
            }
        }
        let mut content_formats = Vec::new();
        let mut objects: Vec<(Path, Option<Version>, usize)> = Vec::new();
        for (i, l) in links.iter().enumerate() {
            let path = if root_idx == Some(i) {
                Path::Root
            } else {
                target_path(&l.target, root.as_deref())
                    .map_err(|error| LinkError::InvalidPath { link: i, error })?
            };
            match path.depth() {
                0 => {
                    for p in l
                        .params
                        .iter()
                        .filter(|p| p.name.eq_ignore_ascii_case("ct"))
                    {
                        let v = p
                            .value()
                            .ok_or(LinkError::InvalidContentFormat { link: i })?;
                        parse_content_formats(v, &mut content_formats)
                            .map_err(|()| LinkError::InvalidContentFormat { link: i })?;
                    }
                }
                1 | 2 => {
                    let ver = match l.param("ver") {
                        None => None,
                        Some(p) => {
                            let mut a = Attributes::new();
                            let v = p.value().ok_or(LinkError::Attribute {
                                link: i,
                                error: AttributeError::MissingValue(AttributeName::Ver),
                            })?;
                            a.set_from_str(AttributeName::Ver, v)
                                .map_err(|error| LinkError::Attribute { link: i, error })?;
                            a.ver
                        }
                    };
                    objects.push((path, ver, i));
                }
                _ => return Err(LinkError::UnexpectedDepth { link: i }),
            }
        }
        objects.sort_by_key(|&(p, _, i)| (p, i));
        if let Some(w) = objects.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(LinkError::DuplicatePath { link: w[1].2 });
        }
        content_formats.sort_unstable();
        content_formats.dedup();
        // A server keeps these for every registration: no spare capacity
        // (the collect may reuse the wider tuples' buffer).
        content_formats.shrink_to_fit();
        let mut objects: Vec<(Path, Option<Version>)> =
            objects.into_iter().map(|(p, v, _)| (p, v)).collect();
        objects.shrink_to_fit();
        Ok(RegistrationLinks {
            root,
            content_formats,
            objects,
        })
    }

    /// The links this payload is made of, in canonical order: the root link
    /// first (`<root>;rt="oma.lwm2m";ct=...`, or `</>;ct=...` without an
    /// alternate path, or none), then objects sorted by path.
    pub fn to_links(&self) -> Result<Vec<Link>, LinkError> {
        let prefix = match &self.root {
            None => "",
            Some(r) => {
                if normalize_root(r).ok().flatten().as_deref() != Some(r.as_str())
                    || !r.bytes().all(is_target_char)
                {
                    return Err(LinkError::NotEncodable(
                        "alternate path must look like /lwm2m: no numeric, empty or trailing segment",
                    ));
                }
                r.as_str()
            }
        };
        let mut links = Vec::new();
        let mut cfs = self.content_formats.clone();
        cfs.sort_unstable();
        cfs.dedup();
        if self.root.is_some() || !cfs.is_empty() {
            let mut l = Link::new(if prefix.is_empty() { "/" } else { prefix });
            if self.root.is_some() {
                l.params.push(LinkParam::quoted("rt", "oma.lwm2m"));
            }
            if !cfs.is_empty() {
                l.params.push(content_format_param(&cfs));
            }
            links.push(l);
        }
        let mut objects = self.objects.clone();
        objects.sort_by_key(|&(p, _)| p);
        if objects.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(LinkError::NotEncodable("registration lists a path twice"));
        }
        for (path, ver) in &objects {
            if !matches!(path.depth(), 1 | 2) {
                return Err(LinkError::NotEncodable(
                    "registration lists objects and object instances only",
                ));
            }
            let mut target = String::from(prefix);
            let _ = write!(target, "{path}");
            let mut l = Link::new(&target);
            if let Some(v) = ver {
                l.params.push(LinkParam::token("ver", &v.to_string()));
            }
            links.push(l);
        }
        Ok(links)
    }

    /// Appends the payload to `out` (deterministic: sorted, no whitespace).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), LinkError> {
        encode_links(&self.to_links()?, out)
    }
}

// ---------------------------------------------------------------------------
// LwM2M: Discover and Bootstrap-Discover
// ---------------------------------------------------------------------------

/// One link of a Discover answer: a path and the attributes reported for it
/// (notification attributes attached or inherited, plus `dim`, `ver`; in
/// Bootstrap-Discover `ssid` and `uri`).
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoverEntry {
    /// The object, instance, resource or resource instance.
    pub path: Path,
    /// Its attributes.
    pub attributes: Attributes,
}

impl DiscoverEntry {
    /// An entry without attributes.
    pub fn new(path: Path) -> DiscoverEntry {
        DiscoverEntry {
            path,
            attributes: Attributes::new(),
        }
    }
}

/// The link parameters of `attrs` in [`AttributeName::ALL`] order; `uri` is
/// quoted (TS Core 1.2 Table 7.3.1-1 gives it as a quoted string), every
/// other value is a plain token (`ver=1.1`, `gt=50`).
fn attribute_params(attrs: &Attributes) -> Result<Vec<LinkParam>, LinkError> {
    let mut out = Vec::new();
    for name in AttributeName::ALL {
        if let Some(v) = attrs.value_string(name) {
            if name == AttributeName::Uri {
                if v.is_empty() {
                    return Err(LinkError::NotEncodable("empty uri attribute"));
                }
                out.push(LinkParam::quoted(name.as_str(), &v));
            } else {
                out.push(LinkParam::token(name.as_str(), &v));
            }
        }
    }
    Ok(out)
}

/// The attributes of link `i`; unknown parameters are skipped (links may carry
/// other CoRE parameters), known ones must be valid and appear once.
fn link_attributes(link: &Link, i: usize) -> Result<Attributes, LinkError> {
    let mut attrs = Attributes::new();
    for p in &link.params {
        let Some(name) = AttributeName::from_name(&p.name) else {
            continue;
        };
        let err = |error| LinkError::Attribute { link: i, error };
        if attrs.is_set(name) {
            return Err(err(AttributeError::Duplicate(name)));
        }
        let v = p.value().ok_or(err(AttributeError::MissingValue(name)))?;
        attrs.set_from_str(name, v).map_err(err)?;
    }
    Ok(attrs)
}

fn entries_to_links(
    entries: &[DiscoverEntry],
    root: Option<Version>,
) -> Result<Vec<Link>, LinkError> {
    let mut sorted: Vec<&DiscoverEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.path);
    if sorted.windows(2).any(|w| w[0].path == w[1].path) {
        return Err(LinkError::NotEncodable(
            "discover output lists a path twice",
        ));
    }
    let mut links = Vec::with_capacity(sorted.len() + 1);
    if let Some(v) = root {
        links.push(Link::new("/").with(LinkParam::token("lwm2m", &v.to_string())));
    }
    for e in sorted {
        let mut l = Link::new(&e.path.to_path_string());
        l.params = attribute_params(&e.attributes)?;
        links.push(l);
    }
    Ok(links)
}

fn links_to_entries(links: &[Link], root: Option<&str>) -> Result<Vec<DiscoverEntry>, LinkError> {
    let mut entries: Vec<(DiscoverEntry, usize)> = Vec::with_capacity(links.len());
    for (i, l) in links.iter().enumerate() {
        let path = target_path(&l.target, root)
            .map_err(|error| LinkError::InvalidPath { link: i, error })?;
        entries.push((
            DiscoverEntry {
                path,
                attributes: link_attributes(l, i)?,
            },
            i,
        ));
    }
    entries.sort_by_key(|(e, i)| (e.path, *i));
    if let Some(w) = entries.windows(2).find(|w| w[0].0.path == w[1].0.path) {
        return Err(LinkError::DuplicatePath { link: w[1].1 });
    }
    Ok(entries.into_iter().map(|(e, _)| e).collect())
}

/// Writes a Discover answer, sorted by path:
/// `</3>;ver=1.1,</3/0>;pmin=10,</3/0/1>,</3/0/7>;dim=2`.
///
/// ```
/// use lwm2m_core::format::link::{encode_discover, DiscoverEntry};
/// use lwm2m_core::model::{Attributes, Path, Version};
/// let entries = [
///     DiscoverEntry { path: Path::Resource(3, 0, 7), attributes: Attributes { dim: Some(2), ..Attributes::new() } },
///     DiscoverEntry { path: Path::Object(3), attributes: Attributes { ver: Some(Version::new(1, 1)), ..Attributes::new() } },
///     DiscoverEntry { path: Path::Instance(3, 0), attributes: Attributes { pmin: Some(10), ..Attributes::new() } },
///     DiscoverEntry::new(Path::Resource(3, 0, 1)),
/// ];
/// let mut out = Vec::new();
/// encode_discover(&entries, &mut out).unwrap();
/// assert_eq!(out, b"</3>;ver=1.1,</3/0>;pmin=10,</3/0/1>,</3/0/7>;dim=2");
/// ```
pub fn encode_discover(entries: &[DiscoverEntry], out: &mut Vec<u8>) -> Result<(), LinkError> {
    encode_links(&entries_to_links(entries, None)?, out)
}

/// Parses a Discover answer into entries sorted by path. `root` is the
/// client's alternate path, if it announced one (targets may carry it).
pub fn decode_discover(
    payload: &[u8],
    root: Option<&str>,
) -> Result<Vec<DiscoverEntry>, LinkError> {
    links_to_entries(&decode_links(payload)?, root)
}

/// A Bootstrap-Discover answer: the enabler version (`</>;lwm2m=1.1`) and the
/// object / instance links with `ver`, `ssid`, `uri`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BootstrapDiscover {
    /// LwM2M enabler version of the client.
    pub lwm2m: Option<Version>,
    /// Objects and instances, sorted by path after decoding.
    pub entries: Vec<DiscoverEntry>,
}

impl BootstrapDiscover {
    /// Writes `</>;lwm2m=X.Y` (the RFC 6690-conformant form of TS Core 1.2
    /// §6.1.7.3) and the entries sorted by path. An entry for `/` cannot be
    /// written (the root link is reserved for `lwm2m`).
    ///
    /// ```
    /// use lwm2m_core::format::link::{BootstrapDiscover, DiscoverEntry};
    /// use lwm2m_core::model::{Attributes, Path, Version};
    /// let bd = BootstrapDiscover {
    ///     lwm2m: Some(Version::new(1, 1)),
    ///     entries: vec![DiscoverEntry {
    ///         path: Path::Instance(0, 0),
    ///         attributes: Attributes { ssid: Some(101), uri: Some("coap://s.example".into()), ..Attributes::new() },
    ///     }],
    /// };
    /// let mut out = Vec::new();
    /// bd.encode(&mut out).unwrap();
    /// assert_eq!(out, br#"</>;lwm2m=1.1,</0/0>;ssid=101;uri="coap://s.example""#);
    /// ```
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), LinkError> {
        if self.entries.iter().any(|e| e.path == Path::Root) {
            return Err(LinkError::NotEncodable(
                "bootstrap-discover root link carries only lwm2m; use the lwm2m field",
            ));
        }
        encode_links(&entries_to_links(&self.entries, self.lwm2m)?, out)
    }

    /// Parses a Bootstrap-Discover answer, in the 1.2 form
    /// (`</>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://..."`) or the pre-1.2 one
    /// (`lwm2m="1.0",</0/0>;ssid=101`).
    pub fn decode(payload: &[u8]) -> Result<BootstrapDiscover, LinkError> {
        let links = parse(payload, &LinkLimits::DEFAULT, true)?;
        let mut lwm2m = None;
        let mut entries = links_to_entries(&links, None)?;
        if entries.first().is_some_and(|e| e.path == Path::Root) {
            let root = entries.remove(0);
            lwm2m = root.attributes.lwm2m;
        }
        Ok(BootstrapDiscover { lwm2m, entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;
    use proptest::prelude::*;

    fn links(s: &str) -> Result<Vec<Link>, LinkError> {
        decode_links(s.as_bytes())
    }

    fn reg(s: &str) -> Result<RegistrationLinks, LinkError> {
        RegistrationLinks::decode(s.as_bytes())
    }

    fn reg_bytes(r: &RegistrationLinks) -> String {
        let mut out = Vec::new();
        r.encode(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn disc_bytes(e: &[DiscoverEntry]) -> String {
        let mut out = Vec::new();
        encode_discover(e, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    // --- generic parser ---

    #[test]
    fn parses_brief_example_into_typed_links() {
        let l = links(r#"</1/0>,</3/0>;ver=1.1,</>;rt="oma.lwm2m";ct=110"#).unwrap();
        assert_eq!(
            l,
            vec![
                Link::new("/1/0"),
                Link::new("/3/0").with(LinkParam::token("ver", "1.1")),
                Link::new("/")
                    .with(LinkParam::quoted("rt", "oma.lwm2m"))
                    .with(LinkParam::token("ct", "110")),
            ]
        );
        assert_eq!(
            links_to_string(&l).unwrap(),
            r#"</1/0>,</3/0>;ver=1.1,</>;rt="oma.lwm2m";ct=110"#
        );
    }

    #[test]
    fn quoted_values_with_escapes_and_flags() {
        let text = r#"</a>;title="say \"hi\" \\ ok";obs;sz=12;t="é,;<>""#;
        let l = links(text).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(
            l[0].params[0],
            LinkParam::quoted("title", r#"say "hi" \ ok"#)
        );
        assert_eq!(l[0].params[1], LinkParam::flag("obs"));
        assert_eq!(l[0].params[2], LinkParam::token("sz", "12"));
        assert_eq!(l[0].params[3], LinkParam::quoted("t", "é,;<>"));
        assert_eq!(links_to_string(&l).unwrap(), text);
        // `\x` for an ordinary x is x.
        assert_eq!(
            links(r#"</a>;t="\a""#).unwrap()[0].params[0],
            LinkParam::quoted("t", "a")
        );
        // Name lookup is case-insensitive, the name is kept as written.
        let l = links("</a>;CT=40").unwrap();
        assert_eq!(l[0].param("ct").unwrap().name, "CT");
    }

    #[test]
    fn whitespace_between_links_and_params_is_skipped() {
        let l = links(" </1/0> , </2/0> ;ver=1.0 ;obs ,\r\n</3>\t").unwrap();
        assert_eq!(
            l,
            vec![
                Link::new("/1/0"),
                Link::new("/2/0")
                    .with(LinkParam::token("ver", "1.0"))
                    .with(LinkParam::flag("obs")),
                Link::new("/3"),
            ]
        );
    }

    #[test]
    fn empty_payload_is_no_links() {
        assert_eq!(links(""), Ok(vec![]));
        assert_eq!(links("  "), Ok(vec![]));
    }

    // --- known-bad inputs (regressions) ---

    #[test]
    fn bad_unterminated_quote() {
        assert_eq!(
            links(r#"</1>;rt="oma.lwm2m"#),
            Err(LinkError::UnterminatedQuote { offset: 8 })
        );
        // An escape right before the end hides the closing quote.
        assert_eq!(
            links(r#"</1>;rt="x\""#),
            Err(LinkError::UnterminatedQuote { offset: 8 })
        );
        assert_eq!(
            links(r#"</1>;rt="\"#),
            Err(LinkError::UnterminatedQuote { offset: 8 })
        );
    }

    #[test]
    fn bad_open_angle_without_close() {
        assert_eq!(
            links("</1/0"),
            Err(LinkError::UnterminatedTarget { offset: 0 })
        );
        assert_eq!(
            links("</1>,<"),
            Err(LinkError::UnterminatedTarget { offset: 5 })
        );
        assert_eq!(
            links("</1/0 ,</2>"),
            Err(LinkError::Syntax {
                offset: 5,
                expected: "URI-reference character or '>' closing the target"
            })
        );
        assert!(matches!(
            links("</1/0<</2>"),
            Err(LinkError::Syntax { offset: 5, .. })
        ));
    }

    #[test]
    fn bad_empty_target() {
        assert_eq!(links("<>"), Err(LinkError::EmptyTarget { offset: 0 }));
        assert_eq!(
            links("</1>,<>;ct=1"),
            Err(LinkError::EmptyTarget { offset: 5 })
        );
    }

    #[test]
    fn bad_grammar() {
        let syntax_at = |s: &str| match links(s) {
            Err(LinkError::Syntax { offset, .. }) => offset,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(syntax_at("abc"), 0);
        assert_eq!(syntax_at("</1>,"), 5); // trailing comma
        assert_eq!(syntax_at("</1>,,</2>"), 5);
        assert_eq!(syntax_at("</1>;"), 5); // ';' without a name
        assert_eq!(syntax_at("</1>;=3"), 5);
        assert_eq!(syntax_at("</1>;a="), 7); // '=' without a value
        assert_eq!(syntax_at("</1>;a=,</2>"), 7);
        assert_eq!(syntax_at("</1>;a=b c"), 9);
        assert_eq!(syntax_at("</1> </2>"), 5);
        assert_eq!(syntax_at("</1>;a=\"x\"y"), 10);
        assert_eq!(syntax_at("</ 1>"), 2);
        assert_eq!(syntax_at("</1>;a=\u{e9}"), 7);
    }

    #[test]
    fn bad_utf8() {
        assert_eq!(
            decode_links(b"</1>;t=\"\xff\""),
            Err(LinkError::InvalidUtf8 { offset: 8 })
        );
    }

    #[test]
    fn bad_ten_thousand_links_over_the_bound() {
        let text = "</1>,".repeat(10_000);
        let text = text.trim_end_matches(',');
        assert_eq!(
            links(text),
            Err(LinkError::TooManyLinks {
                max: LinkLimits::DEFAULT.max_links
            })
        );
        // Exactly at the bound is fine.
        let ok = "</1>,".repeat(4096);
        assert_eq!(links(ok.trim_end_matches(',')).unwrap().len(), 4096);
    }

    #[test]
    fn bad_too_long_and_too_many_params() {
        let limits = LinkLimits {
            max_len: 10,
            max_links: 10,
            max_params: 2,
        };
        assert_eq!(
            decode_links_with(b"</1>,</2>,</3>", &limits),
            Err(LinkError::TooLong { len: 14, max: 10 })
        );
        assert_eq!(
            decode_links_with(b"</1>;a;b;c", &limits),
            Err(LinkError::TooManyParams { offset: 9, max: 2 })
        );
        decode_links_with(b"</1>;a;b", &limits).unwrap();
    }

    #[test]
    fn errors_map_to_coap_400_and_format_errors() {
        let e = links("</1").unwrap_err();
        assert_eq!(e.coap_code(), (4, 0));
        assert_eq!(FormatError::from(e), FormatError::Truncated { offset: 0 });
        let e = reg("</65535>").unwrap_err();
        assert_eq!(FormatError::from(e.clone()), FormatError::InvalidPath);
        assert_eq!(FormatError::from(e).coap_code(), (4, 0));
        assert_eq!(
            decode(b"</1>", &Path::Object(1), &crate::model::NO_MODELS),
            Err(FormatError::UnsupportedFormat(ContentFormat::LINK_FORMAT))
        );
    }

    #[test]
    fn writer_rejects_what_the_parser_would_not_read_back() {
        let bad = [
            Link::new(""),
            Link::new("/a b"),
            Link::new("/a>"),
            Link::new("/a").with(LinkParam::flag("")),
            Link::new("/a").with(LinkParam::flag("a;b")),
            Link::new("/a").with(LinkParam::token("t", "")),
            Link::new("/a").with(LinkParam::token("t", "a,b")),
            Link::new("/a").with(LinkParam::token("t", "\"")),
        ];
        for l in bad {
            let mut out = b"keep".to_vec();
            assert!(matches!(
                encode_links(core::slice::from_ref(&l), &mut out),
                Err(LinkError::NotEncodable(_))
            ));
            assert_eq!(out, b"keep", "nothing appended on error");
        }
    }

    // --- registration payload ---

    #[test]
    fn registration_ts_example_plain() {
        // TS Core 1.2 §6.2.1 example payload.
        let text = "</1/0>,</1/1>,</2/0>,</2/1>,</2/2>,</2/3>,</2/4>,</3/0>,</4/0>,</5>";
        let r = reg(text).unwrap();
        assert_eq!(r.root, None);
        assert!(r.content_formats.is_empty());
        let paths: Vec<Path> = r.objects.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            paths,
            [
                Path::Instance(1, 0),
                Path::Instance(1, 1),
                Path::Instance(2, 0),
                Path::Instance(2, 1),
                Path::Instance(2, 2),
                Path::Instance(2, 3),
                Path::Instance(2, 4),
                Path::Instance(3, 0),
                Path::Instance(4, 0),
                Path::Object(5),
            ]
        );
        assert!(r.objects.iter().all(|(_, v)| v.is_none()));
        assert_eq!(reg_bytes(&r), text);
    }

    #[test]
    fn registration_ts_example_with_content_formats() {
        // TS Core 1.2 §6.2.1: "</>;ct=110, </1/0>,..." (note the space, as printed).
        let r =
            reg("</>;ct=110, </1/0>,</1/1>,</2/0>,</2/1>,</2/2>,</2/3>,</2/4>,</3/0>,</4/0>,</5>")
                .unwrap();
        assert_eq!(r.content_formats, [110]);
        assert_eq!(r.objects.len(), 10);
        assert_eq!(
            reg_bytes(&r),
            "</>;ct=110,</1/0>,</1/1>,</2/0>,</2/1>,</2/2>,</2/3>,</2/4>,</3/0>,</4/0>,</5>"
        );
        // The quoted list form.
        let r = reg(r#"</>;ct="110 112 60", </1/0>,</1/1>,</2/0>,</2/1>,</2/2>,</2/3>,</2/4>,</3/0>,</4/0>,</5>"#)
            .unwrap();
        assert_eq!(r.content_formats, [60, 110, 112]);
        assert!(reg_bytes(&r).starts_with(r#"</>;ct="60 110 112",</1/0>"#));
    }

    #[test]
    fn registration_brief_example_and_versions() {
        let r = reg(r#"</1/0>,</3/0>;ver=1.1,</>;rt="oma.lwm2m";ct=110"#).unwrap();
        assert_eq!(
            r,
            RegistrationLinks {
                root: None,
                content_formats: vec![110],
                objects: vec![
                    (Path::Instance(1, 0), None),
                    (Path::Instance(3, 0), Some(Version::new(1, 1))),
                ],
            }
        );
        // Object versions on object links (object versioning), quoted or not.
        let r = reg(r#"</3>;ver=1.1,</3/0>,</3303>;ver="1.1",</3303/0>"#).unwrap();
        assert_eq!(
            r.objects,
            [
                (Path::Object(3), Some(Version::new(1, 1))),
                (Path::Instance(3, 0), None),
                (Path::Object(3303), Some(Version::new(1, 1))),
                (Path::Instance(3303, 0), None),
            ]
        );
        assert_eq!(
            reg_bytes(&r),
            "</3>;ver=1.1,</3/0>,</3303>;ver=1.1,</3303/0>"
        );
    }

    #[test]
    fn registration_alternate_path() {
        let text = r#"</lwm2m>;rt="oma.lwm2m";ct=11543,</lwm2m/1/0>,</lwm2m/3/0>"#;
        let r = reg(text).unwrap();
        assert_eq!(r.root.as_deref(), Some("/lwm2m"));
        assert_eq!(r.content_formats, [11543]);
        assert_eq!(
            r.objects,
            [(Path::Instance(1, 0), None), (Path::Instance(3, 0), None)]
        );
        assert_eq!(reg_bytes(&r), text);
        // Root link after the objects, trailing slash, and a multi-segment root.
        let r = reg(r#"</a/b/1/0>,</a/b/>;rt="core.rd oma.lwm2m""#).unwrap();
        assert_eq!(r.root.as_deref(), Some("/a/b"));
        assert_eq!(r.objects, [(Path::Instance(1, 0), None)]);
        // `</>;rt="oma.lwm2m"` is the default root.
        assert_eq!(reg(r#"</>;rt="oma.lwm2m",</1/0>"#).unwrap().root, None);
    }

    #[test]
    fn registration_ignores_unknown_params_and_keeps_security_links() {
        let r = reg("</0/0>,</3/0>;obs;foo=bar;ct=40,</4>;title=\"x\"").unwrap();
        assert_eq!(
            r.objects,
            [
                (Path::Instance(0, 0), None),
                (Path::Instance(3, 0), None),
                (Path::Object(4), None)
            ]
        );
        assert!(
            r.content_formats.is_empty(),
            "ct on an object link is not the client's list"
        );
    }

    #[test]
    fn registration_empty_payload() {
        assert_eq!(reg("").unwrap(), RegistrationLinks::default());
        assert_eq!(reg_bytes(&RegistrationLinks::default()), "");
    }

    #[test]
    fn bad_registration_object_id_overflow_is_an_error_not_a_wrap() {
        // 37777777777 is 2^32-1 in octal digits; as decimal it is far above u16.
        assert_eq!(
            reg("</37777777777>"),
            Err(LinkError::InvalidPath {
                link: 0,
                error: PathError::InvalidSegment
            })
        );
        assert_eq!(
            reg("</1/0>,</65536>"),
            Err(LinkError::InvalidPath {
                link: 1,
                error: PathError::IdOutOfRange
            })
        );
        // 65535 is reserved.
        assert_eq!(
            reg("</65535>"),
            Err(LinkError::InvalidPath {
                link: 0,
                error: PathError::IdOutOfRange
            })
        );
        assert_eq!(
            reg("</3/65535>"),
            Err(LinkError::InvalidPath {
                link: 0,
                error: PathError::IdOutOfRange
            })
        );
    }

    #[test]
    fn bad_registration_links() {
        assert_eq!(reg("</3/0/1>"), Err(LinkError::UnexpectedDepth { link: 0 }));
        assert_eq!(
            reg("</3/0>,</1/0>,</3/0>"),
            Err(LinkError::DuplicatePath { link: 2 })
        );
        assert_eq!(
            reg("</>;ct=abc"),
            Err(LinkError::InvalidContentFormat { link: 0 })
        );
        assert_eq!(
            reg("</>;ct=70000"),
            Err(LinkError::InvalidContentFormat { link: 0 })
        );
        assert_eq!(
            reg("</>;ct"),
            Err(LinkError::InvalidContentFormat { link: 0 })
        );
        assert_eq!(
            reg("</>;ct=\" \""),
            Err(LinkError::InvalidContentFormat { link: 0 })
        );
        assert_eq!(
            reg("</3>;ver=x"),
            Err(LinkError::Attribute {
                link: 0,
                error: AttributeError::InvalidVersion(AttributeName::Ver)
            })
        );
        assert_eq!(
            reg("</3>;ver"),
            Err(LinkError::Attribute {
                link: 0,
                error: AttributeError::MissingValue(AttributeName::Ver)
            })
        );
        assert_eq!(
            reg(r#"</12>;rt="oma.lwm2m""#),
            Err(LinkError::InvalidAlternatePath { link: 0 })
        );
        assert_eq!(
            reg(r#"</a>;rt="oma.lwm2m",</b>;rt="oma.lwm2m""#),
            Err(LinkError::InvalidAlternatePath { link: 1 })
        );
        assert_eq!(
            reg(r#"</a//b>;rt="oma.lwm2m""#),
            Err(LinkError::InvalidAlternatePath { link: 0 })
        );
        assert!(matches!(
            reg("</foo>"),
            Err(LinkError::InvalidPath { link: 0, .. })
        ));
        assert!(matches!(
            reg("<coap://h/1/0>"),
            Err(LinkError::InvalidPath {
                error: PathError::MissingLeadingSlash,
                ..
            })
        ));
        // An object link outside the announced root is still an LwM2M path.
        let r = reg(r#"</lwm2m>;rt="oma.lwm2m",</1/0>"#).unwrap();
        assert_eq!(r.objects, [(Path::Instance(1, 0), None)]);
        // ... but not one that merely starts with the root's letters.
        assert!(reg(r#"</lwm2m>;rt="oma.lwm2m",</lwm2mx/1/0>"#).is_err());
    }

    #[test]
    fn registration_encode_rejects_what_cannot_be_read_back() {
        let bad_root = RegistrationLinks {
            root: Some("/12".into()),
            ..Default::default()
        };
        assert!(matches!(
            bad_root.to_links(),
            Err(LinkError::NotEncodable(_))
        ));
        let trailing = RegistrationLinks {
            root: Some("/lwm2m/".into()),
            ..Default::default()
        };
        assert!(trailing.to_links().is_err());
        let deep = RegistrationLinks {
            objects: vec![(Path::Resource(3, 0, 1), None)],
            ..Default::default()
        };
        assert!(deep.to_links().is_err());
        let dup = RegistrationLinks {
            objects: vec![(Path::Object(3), None), (Path::Object(3), None)],
            ..Default::default()
        };
        assert!(dup.to_links().is_err());
    }

    // --- Discover ---

    fn attrs(q: &[&str]) -> Attributes {
        Attributes::from_query(q.iter().copied()).unwrap()
    }

    #[test]
    fn discover_ts_example_object() {
        // TS Core 1.0 §5.4.2, Discover on /3 (as printed, with spaces).
        let text = "</3>;pmin=10,</3/0>,</3/0/1>, </3/0/2>, </3/0/3>, </3/0/4>, </3/0/6>,</3/0/7>,</3/0/8>,</3/0/11>,</3/0/16>";
        let e = decode_discover(text.as_bytes(), None).unwrap();
        assert_eq!(e.len(), 11);
        assert_eq!(e[0].path, Path::Object(3));
        assert_eq!(e[0].attributes, attrs(&["pmin=10"]));
        assert_eq!(e[10].path, Path::Resource(3, 0, 16));
        assert_eq!(disc_bytes(&e), text.replace(' ', ""));
    }

    #[test]
    fn discover_ts_example_instance() {
        // TS Core 1.0 §5.4.2, Discover on /3/0.
        let text = "</3/0>;pmax=60, </3/0/1>, </3/0/2>, </3/0/3>, </3/0/4>, </3/0/6>;dim=8,</3/0/7>;dim=8;gt=50;lt=42.2,</3/0/8>;dim=8,</3/0/11>,</3/0/16>";
        let e = decode_discover(text.as_bytes(), None).unwrap();
        assert_eq!(e[0].attributes, attrs(&["pmax=60"]));
        let r7 = e
            .iter()
            .find(|x| x.path == Path::Resource(3, 0, 7))
            .unwrap();
        assert_eq!(r7.attributes, attrs(&["dim=8", "gt=50", "lt=42.2"]));
        assert_eq!(disc_bytes(&e), text.replace(' ', ""));
    }

    #[test]
    fn discover_ts_example_resource_with_inherited_attributes() {
        // TS Core 1.0 §5.4.2, Discover on /3/0/7: "pmin assigned at the
        // Object level, and pmax assigned at the Object Instance level".
        let object = attrs(&["pmin=10"]);
        let instance = attrs(&["pmax=60"]);
        let resource = attrs(&["dim=8", "gt=50", "lt=42.2"]);
        let e = DiscoverEntry {
            path: Path::Resource(3, 0, 7),
            attributes: Attributes::inherit(&[&object, &instance, &resource]),
        };
        let text = "</3/0/7>;dim=8;pmin=10;pmax=60;gt=50;lt=42.2";
        assert_eq!(disc_bytes(core::slice::from_ref(&e)), text);
        assert_eq!(decode_discover(text.as_bytes(), None).unwrap(), [e]);
    }

    #[test]
    fn discover_brief_example_round_trip() {
        let text = "</3>;ver=1.1,</3/0>;pmin=10,</3/0/1>,</3/0/7>;dim=2";
        let e = decode_discover(text.as_bytes(), None).unwrap();
        assert_eq!(
            e,
            [
                DiscoverEntry {
                    path: Path::Object(3),
                    attributes: attrs(&["ver=1.1"])
                },
                DiscoverEntry {
                    path: Path::Instance(3, 0),
                    attributes: attrs(&["pmin=10"])
                },
                DiscoverEntry::new(Path::Resource(3, 0, 1)),
                DiscoverEntry {
                    path: Path::Resource(3, 0, 7),
                    attributes: attrs(&["dim=2"])
                },
            ]
        );
        assert_eq!(disc_bytes(&e), text);
    }

    #[test]
    fn discover_all_attributes_and_alternate_root() {
        let text = "</lwm2m/3303/0/5700>;dim=0;pmin=1;pmax=2;gt=-5.5;lt=-10;st=0.25;epmin=1;epmax=2;edge=1;con=0;hqmax=4;obs;rt=\"x\"";
        let e = decode_discover(text.as_bytes(), Some("/lwm2m")).unwrap();
        assert_eq!(e[0].path, Path::Resource(3303, 0, 5700));
        assert_eq!(e[0].attributes.gt, Some(-5.5));
        assert_eq!(e[0].attributes.edge, Some(true));
        assert_eq!(
            disc_bytes(&e),
            "</3303/0/5700>;dim=0;pmin=1;pmax=2;gt=-5.5;lt=-10;st=0.25;epmin=1;epmax=2;edge=1;con=0;hqmax=4"
        );
    }

    #[test]
    fn bad_discover() {
        assert_eq!(
            decode_discover(b"</3/0>;pmin=-1", None),
            Err(LinkError::Attribute {
                link: 0,
                error: AttributeError::NegativePeriod(AttributeName::Pmin)
            })
        );
        assert_eq!(
            decode_discover(b"</3/0>,</3/0/1>;dim=8;dim=9", None),
            Err(LinkError::Attribute {
                link: 1,
                error: AttributeError::Duplicate(AttributeName::Dim)
            })
        );
        assert_eq!(
            decode_discover(b"</3/0>;pmin", None),
            Err(LinkError::Attribute {
                link: 0,
                error: AttributeError::MissingValue(AttributeName::Pmin)
            })
        );
        assert_eq!(
            decode_discover(b"</3/0>,</3/0/>", None),
            Err(LinkError::DuplicatePath { link: 1 })
        );
        assert!(matches!(
            decode_discover(b"</3/0/1/2/3>", None),
            Err(LinkError::InvalidPath {
                error: PathError::TooDeep,
                ..
            })
        ));
        let dup = [
            DiscoverEntry::new(Path::Object(3)),
            DiscoverEntry::new(Path::Object(3)),
        ];
        assert!(encode_discover(&dup, &mut Vec::new()).is_err());
    }

    // --- Bootstrap-Discover ---

    fn bs(text: &str) -> BootstrapDiscover {
        BootstrapDiscover::decode(text.as_bytes()).unwrap()
    }

    fn bs_bytes(b: &BootstrapDiscover) -> String {
        let mut out = Vec::new();
        b.encode(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn sec(i: u16, ssid: u16, uri: &str) -> DiscoverEntry {
        DiscoverEntry {
            path: Path::Instance(0, i),
            attributes: Attributes {
                ssid: Some(ssid),
                uri: Some(uri.into()),
                ..Attributes::new()
            },
        }
    }

    #[test]
    fn bootstrap_discover_ts_example_security_object() {
        // TS Core 1.2 §6.1.7.3, first example (targets /0), as printed.
        let b = bs(
            r#"</>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://server_1.example.com", </0/1/>, </0/2>;ssid=102;uri="coaps://server_2.example.com""#,
        );
        assert_eq!(b.lwm2m, Some(Version::new(1, 1)));
        assert_eq!(
            b.entries,
            [
                sec(0, 101, "coaps://server_1.example.com"),
                DiscoverEntry::new(Path::Instance(0, 1)),
                sec(2, 102, "coaps://server_2.example.com"),
            ]
        );
        assert_eq!(
            bs_bytes(&b),
            r#"</>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://server_1.example.com",</0/1>,</0/2>;ssid=102;uri="coaps://server_2.example.com""#
        );
    }

    #[test]
    fn bootstrap_discover_ts_example_root_and_oscore() {
        // TS Core 1.2 §6.1.7.3, second example (targets /).
        let b = bs(
            r#"</>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://server_1.example.com", </0/1>, </1/0/>;ssid=101, </3/0>,</5>,</4>"#,
        );
        assert_eq!(
            bs_bytes(&b),
            r#"</>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://server_1.example.com",</0/1>,</1/0>;ssid=101,</3/0>,</4>,</5>"#
        );
        // Third example (OSCORE, listed out of order); output is sorted.
        let b = bs(
            r#"</>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://server_1.example.com",</0/2>;ssid=102;uri="coap://server_1.example.com",</21/0>;ssid=101,</21/2>;ssid=102,</0/1>,</21/1/>"#,
        );
        let paths: Vec<String> = b.entries.iter().map(|e| e.path.to_path_string()).collect();
        assert_eq!(paths, ["/0/0", "/0/1", "/0/2", "/21/0", "/21/1", "/21/2"]);
        assert_eq!(b.entries[3].attributes.ssid, Some(101));
        // Fourth example: an object version.
        let b = bs(
            r#"</>;lwm2m=1.1,</0/0>,</0/1>;ssid=101;uri="coaps://server_1.example.com", </1/0/>;ssid=101, </3/0>,</5>,</4>,</55>;ver=1.9,</55/0>"#,
        );
        let o55 = b
            .entries
            .iter()
            .find(|e| e.path == Path::Object(55))
            .unwrap();
        assert_eq!(o55.attributes.ver, Some(Version::new(1, 9)));
        assert!(bs_bytes(&b).ends_with(",</55>;ver=1.9,</55/0>"));
    }

    #[test]
    fn bootstrap_discover_legacy_bare_lwm2m() {
        // The pre-1.2 form the TS 1.2 note says servers MAY accept.
        let b = bs("lwm2m=1.0,</0/0>;ssid=101,</0/1/>,</0/2>;ssid=102");
        assert_eq!(b.lwm2m, Some(Version::new(1, 0)));
        assert_eq!(b.entries.len(), 3);
        // The brief's example, quoted version.
        let b = bs(r#"lwm2m="1.1",</0/0>;ssid=101;uri="coap://server.example""#);
        assert_eq!(b.lwm2m, Some(Version::new(1, 1)));
        assert_eq!(b.entries, [sec(0, 101, "coap://server.example")]);
        assert_eq!(
            bs_bytes(&b),
            r#"</>;lwm2m=1.1,</0/0>;ssid=101;uri="coap://server.example""#
        );
        // The generic parser does not take the bare form.
        assert!(links("lwm2m=1.0,</0/0>").is_err());
        // 1.0 clients may omit the version entirely.
        assert_eq!(bs("</0/0>").lwm2m, None);
    }

    #[test]
    fn bad_bootstrap_discover() {
        assert!(BootstrapDiscover::decode(b"lwm2m=1,</0/0>").is_err());
        assert!(BootstrapDiscover::decode(b"</>;lwm2m=1.1,</>;lwm2m=1.2").is_err());
        assert!(BootstrapDiscover::decode(b"</0/0>;ssid=0").is_err());
        assert!(BootstrapDiscover::decode(b"</0/0>;uri=\"\"").is_err());
        assert!(BootstrapDiscover::decode(b"lwm2m=\"1.1").is_err());
        let root = BootstrapDiscover {
            lwm2m: None,
            entries: vec![DiscoverEntry::new(Path::Root)],
        };
        assert!(root.encode(&mut Vec::new()).is_err());
    }

    // --- property tests ---

    fn arb_link() -> impl Strategy<Value = Link> {
        let target = "/[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]{0,16}";
        let name = "[a-z][a-z0-9.!#$&+^_`|~-]{0,8}";
        let value = prop_oneof![
            Just(None),
            "[A-Za-z0-9!#$%&'()*+./:<=>?@^_`{|}~\\[\\]-]{1,12}"
                .prop_map(|s| Some(ParamValue::Token(s))),
            ".{0,12}".prop_map(|s| Some(ParamValue::Quoted(s))),
        ];
        (target, proptest::collection::vec((name, value), 0..5)).prop_map(|(target, params)| Link {
            target,
            params: params
                .into_iter()
                .map(|(name, value)| LinkParam { name, value })
                .collect(),
        })
    }

    fn arb_object_path() -> impl Strategy<Value = Path> {
        prop_oneof![
            (0u16..=65534).prop_map(Path::Object),
            (0u16..=65534, 0u16..=65534).prop_map(|(o, i)| Path::Instance(o, i)),
        ]
    }

    fn arb_version() -> impl Strategy<Value = Version> {
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Version::new(a, b))
    }

    fn arb_registration() -> impl Strategy<Value = RegistrationLinks> {
        (
            proptest::option::of("(/[a-z][a-z0-9_-]{0,6}){1,3}"),
            proptest::collection::btree_set(any::<u16>(), 0..4),
            proptest::collection::btree_map(
                arb_object_path(),
                proptest::option::of(arb_version()),
                0..12,
            ),
        )
            .prop_map(|(root, cfs, objects)| RegistrationLinks {
                root,
                content_formats: cfs.into_iter().collect(),
                objects: objects.into_iter().collect(),
            })
    }

    fn arb_path() -> impl Strategy<Value = Path> {
        proptest::collection::vec(0u16..=65534, 0..=4).prop_map(|ids| Path::from_ids(&ids).unwrap())
    }

    fn arb_entry_attributes() -> impl Strategy<Value = Attributes> {
        let num = || proptest::option::of(proptest::num::f64::NORMAL | proptest::num::f64::ZERO);
        (
            (
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u32>()),
                num(),
                num(),
                num(),
                proptest::option::of(any::<bool>()),
            ),
            (
                proptest::option::of(any::<u16>()),
                proptest::option::of(1u16..=65534),
                proptest::option::of(".{1,20}"),
                proptest::option::of(arb_version()),
            ),
        )
            .prop_map(|((pmin, pmax, gt, lt, st, edge), (dim, ssid, uri, ver))| {
                Attributes {
                    pmin,
                    pmax,
                    gt,
                    lt,
                    st,
                    edge,
                    dim,
                    ssid,
                    uri,
                    ver,
                    ..Attributes::new()
                }
            })
    }

    proptest! {
        #[test]
        fn links_text_round_trip(ls in proptest::collection::vec(arb_link(), 0..6)) {
            let text = links_to_string(&ls).unwrap();
            let back = decode_links(text.as_bytes()).unwrap();
            prop_assert_eq!(&back, &ls);
            prop_assert_eq!(links_to_string(&back).unwrap(), text);
        }

        #[test]
        fn registration_round_trip(r in arb_registration()) {
            let text = reg_bytes(&r);
            let back = RegistrationLinks::decode(text.as_bytes()).unwrap();
            prop_assert_eq!(&back, &r);
            prop_assert_eq!(reg_bytes(&back), text);
        }

        #[test]
        fn discover_round_trip(m in proptest::collection::btree_map(arb_path(), arb_entry_attributes(), 0..8)) {
            let entries: Vec<DiscoverEntry> = m.into_iter()
                .map(|(path, attributes)| DiscoverEntry { path, attributes })
                .collect();
            let text = disc_bytes(&entries);
            prop_assert_eq!(decode_discover(text.as_bytes(), None).unwrap(), entries);
        }

        #[test]
        fn bootstrap_discover_round_trip(lwm2m in proptest::option::of(arb_version()),
                                         m in proptest::collection::btree_map(arb_object_path(), arb_entry_attributes(), 0..8)) {
            let b = BootstrapDiscover {
                lwm2m,
                entries: m.into_iter().map(|(path, attributes)| DiscoverEntry { path, attributes }).collect(),
            };
            let text = bs_bytes(&b);
            prop_assert_eq!(BootstrapDiscover::decode(text.as_bytes()).unwrap(), b);
        }

        #[test]
        fn parsers_never_panic_on_text(s in "[</>;=,\" \\\\a-z0-9.é]{0,64}") {
            let _ = decode_links(s.as_bytes());
            let _ = RegistrationLinks::decode(s.as_bytes());
            let _ = decode_discover(s.as_bytes(), Some("/a"));
            let _ = BootstrapDiscover::decode(s.as_bytes());
        }

        #[test]
        fn parsers_never_panic_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_links(&b);
            let _ = RegistrationLinks::decode(&b);
            let _ = BootstrapDiscover::decode(&b);
        }

        #[test]
        fn parsed_links_reencode_to_equal_links(s in "[</>;=,\" \\\\a-z0-9.]{0,48}") {
            // Whatever parses must write back and parse to the same links.
            if let Ok(ls) = decode_links(s.as_bytes()) {
                let text = links_to_string(&ls).unwrap();
                prop_assert_eq!(decode_links(text.as_bytes()).unwrap(), ls);
            }
        }
    }

    #[test]
    fn display_messages_say_what_was_expected() {
        let e = links("</1>;").unwrap_err();
        assert_eq!(
            format!("{e}"),
            "link-format syntax error at byte 5: expected a parameter name"
        );
    }
}
