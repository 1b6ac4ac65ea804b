//! LwM2M attributes: the `<NOTIFICATION>` class (pmin, pmax, gt, lt, st,
//! epmin, epmax, edge, con, hqmax), which a server sets with Write-Attributes
//! (or, in 1.2, as Observe parameters), and the `<PROPERTIES>` class (dim,
//! ssid, uri, ver, lwm2m), which a client reports in Discover and
//! Bootstrap-Discover and which nobody writes.
//!
//! Sources: TS Core 1.1 §5.1.2 (Table 5.1.2-1 `<PROPERTIES>`, Table 5.1.2-2
//! `<NOTIFICATION>`) and TS Core 1.2 §7.3 (Tables 7.3.1-1 and 7.3.2-1, which
//! add edge, con and hqmax). Write-Attributes: TS Core 1.0 §5.4.4 (Table 13: a
//! name without value unsets the attribute); on CoAP the attributes travel as
//! Uri-Query options (TS Transport, Write-Attributes mapping).
//!
//! ```
//! use lwm2m_core::model::{Attributes, Path};
//! let a = Attributes::from_query(["pmin=10", "pmax=60", "gt=3.5"]).unwrap();
//! assert_eq!(a.pmin, Some(10));
//! assert_eq!(a.gt, Some(3.5));
//! a.validate_for(&Path::Resource(3303, 0, 5700), None).unwrap();
//! assert_eq!(a.to_query(), ["pmin=10", "pmax=60", "gt=3.5"]);
//! ```

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use super::{Path, ResourceModel, ResourceType};

/// A `major.minor` version, as carried by the `ver` (object version) and
/// `lwm2m` (enabler version) attributes: `1*DIGIT "." 1*DIGIT`
/// (TS Core 1.1 §5.1.2 Table 5.1.2-1, 1.2 §7.3.1).
///
/// ```
/// use lwm2m_core::model::Version;
/// let v: Version = "1.1".parse().unwrap();
/// assert_eq!(v, Version::new(1, 1));
/// assert_eq!(v.to_string(), "1.1");
/// assert!("1".parse::<Version>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major number.
    pub major: u16,
    /// Minor number.
    pub minor: u16,
}

impl Version {
    /// `major.minor`.
    pub const fn new(major: u16, minor: u16) -> Version {
        Version { major, minor }
    }
}

/// Why a version string is not `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionError;

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("version must be two decimal numbers separated by '.' (e.g. 1.1)")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for VersionError {}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Version, VersionError> {
        let (major, minor) = s.split_once('.').ok_or(VersionError)?;
        Ok(Version {
            major: parse_small_uint(major).ok_or(VersionError)?,
            minor: parse_small_uint(minor).ok_or(VersionError)?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// `1*DIGIT` fitting in a u16 (no sign, no spaces).
fn parse_small_uint(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The name of an attribute. [`AttributeName::ALL`] is also the order in which
/// attributes are written (query strings and links), so output is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttributeName {
    /// `lwm2m`: enabler version, on the root link of a Bootstrap-Discover reply.
    Lwm2m,
    /// `ver`: object version, on object links.
    Ver,
    /// `dim`: number of instances of a multiple-instance resource.
    Dim,
    /// `ssid`: short server id, on /0, /1 (and /21) instance links in Bootstrap-Discover.
    Ssid,
    /// `uri`: server URI, on /0 instance links in Bootstrap-Discover.
    Uri,
    /// `pmin`: minimum period between notifications, seconds.
    Pmin,
    /// `pmax`: maximum period between notifications, seconds.
    Pmax,
    /// `gt`: notify when the value crosses above this threshold.
    Gt,
    /// `lt`: notify when the value crosses below this threshold.
    Lt,
    /// `st`: notify when the value changed by at least this much.
    St,
    /// `epmin`: minimum evaluation period, seconds (1.1).
    Epmin,
    /// `epmax`: maximum evaluation period, seconds (1.1).
    Epmax,
    /// `edge`: notify on a rising (1) or falling (0) edge of a boolean (1.2).
    Edge,
    /// `con`: send notifications confirmable (1) or not (0) (1.2).
    Con,
    /// `hqmax`: historical queue size while offline (1.2).
    Hqmax,
}

impl AttributeName {
    /// Every attribute, in output order: properties first (as in the TS
    /// Discover examples, `</3/0/7>;dim=8;pmin=10;pmax=60;gt=50;lt=42.2`),
    /// then the notification attributes in TS table order.
    pub const ALL: [AttributeName; 15] = [
        AttributeName::Lwm2m,
        AttributeName::Ver,
        AttributeName::Dim,
        AttributeName::Ssid,
        AttributeName::Uri,
        AttributeName::Pmin,
        AttributeName::Pmax,
        AttributeName::Gt,
        AttributeName::Lt,
        AttributeName::St,
        AttributeName::Epmin,
        AttributeName::Epmax,
        AttributeName::Edge,
        AttributeName::Con,
        AttributeName::Hqmax,
    ];

    /// The CoRE link parameter / query name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeName::Lwm2m => "lwm2m",
            AttributeName::Ver => "ver",
            AttributeName::Dim => "dim",
            AttributeName::Ssid => "ssid",
            AttributeName::Uri => "uri",
            AttributeName::Pmin => "pmin",
            AttributeName::Pmax => "pmax",
            AttributeName::Gt => "gt",
            AttributeName::Lt => "lt",
            AttributeName::St => "st",
            AttributeName::Epmin => "epmin",
            AttributeName::Epmax => "epmax",
            AttributeName::Edge => "edge",
            AttributeName::Con => "con",
            AttributeName::Hqmax => "hqmax",
        }
    }

    /// The attribute called `name` (exact, lower-case match as the TS spells them).
    pub fn from_name(name: &str) -> Option<AttributeName> {
        AttributeName::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// True for the `<NOTIFICATION>` class (writable); false for `<PROPERTIES>` (read-only).
    pub fn is_notification(self) -> bool {
        !matches!(
            self,
            AttributeName::Lwm2m
                | AttributeName::Ver
                | AttributeName::Dim
                | AttributeName::Ssid
                | AttributeName::Uri
        )
    }
}

impl fmt::Display for AttributeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why attributes could not be parsed, applied or accepted. Every variant is a
/// peer error: a server answers a bad Write-Attributes (or Observe with
/// attributes) with 4.00 Bad Request ([`AttributeError::coap_code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttributeError {
    /// A name that is not an LwM2M attribute (the name, cut to 32 bytes).
    UnknownAttribute(String),
    /// The same attribute twice in one query or link.
    Duplicate(AttributeName),
    /// `name` without `=value` where a value is required (or `name=` with an empty value).
    MissingValue(AttributeName),
    /// A value that is not a number of the expected form.
    InvalidNumber(AttributeName),
    /// A period (pmin, pmax, epmin, epmax, hqmax) below zero.
    NegativePeriod(AttributeName),
    /// A number outside the attribute's range (period above 2^32-1 s, dim above
    /// 65535, ssid outside 1..=65534).
    OutOfRange(AttributeName),
    /// `edge` or `con` other than `0` or `1`.
    InvalidFlag(AttributeName),
    /// `ver` or `lwm2m` not `major.minor`.
    InvalidVersion(AttributeName),
    /// An empty `uri`.
    InvalidUri,
    /// A `<PROPERTIES>` attribute (dim, ssid, uri, ver, lwm2m) in Write-Attributes:
    /// they are read-only.
    ReadOnly(AttributeName),
    /// `pmin` greater than `pmax` (pmax = 0 means "no maximum" and is not compared).
    PminAbovePmax,
    /// `epmin` greater than `epmax`.
    EpminAboveEpmax,
    /// `lt` not below `gt`.
    LtNotBelowGt,
    /// `lt + 2·st` not below `gt`.
    StepTooLarge,
    /// `st` below zero.
    NegativeStep,
    /// An attribute that cannot be attached at this level (e.g. `gt` on an
    /// object instance, anything on `/`).
    NotAllowedAtLevel(AttributeName),
    /// `gt`/`lt`/`st` on a resource that is not numeric.
    NotNumeric(AttributeName),
    /// `edge` on a resource that is not boolean.
    NotBoolean,
}

impl AttributeError {
    /// The CoAP response code for this error: always 4.00 Bad Request
    /// (invalid attributes "MUST be rejected", TS Core 1.1 §5.1.2 / 1.2 §7.3.2).
    pub fn coap_code(&self) -> (u8, u8) {
        (4, 0)
    }
}

impl fmt::Display for AttributeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeError::UnknownAttribute(n) => write!(
                f,
                "unknown attribute '{n}': expected one of pmin, pmax, gt, lt, st, epmin, epmax, edge, con, hqmax, dim, ssid, uri, ver, lwm2m"
            ),
            AttributeError::Duplicate(n) => write!(f, "attribute {n} given twice"),
            AttributeError::MissingValue(n) => write!(f, "attribute {n} needs a value"),
            AttributeError::InvalidNumber(n) => {
                write!(f, "attribute {n}: value is not a number of the expected form")
            }
            AttributeError::NegativePeriod(n) => {
                write!(f, "attribute {n}: a period must be 0 or more seconds")
            }
            AttributeError::OutOfRange(n) => write!(f, "attribute {n}: value out of range"),
            AttributeError::InvalidFlag(n) => write!(f, "attribute {n}: value must be 0 or 1"),
            AttributeError::InvalidVersion(n) => {
                write!(f, "attribute {n}: expected a version 'major.minor'")
            }
            AttributeError::InvalidUri => f.write_str("attribute uri: value must not be empty"),
            AttributeError::ReadOnly(n) => {
                write!(f, "attribute {n} is read-only and cannot be written")
            }
            AttributeError::PminAbovePmax => f.write_str("pmin must not be greater than pmax"),
            AttributeError::EpminAboveEpmax => {
                f.write_str("epmin must not be greater than epmax")
            }
            AttributeError::LtNotBelowGt => f.write_str("lt must be less than gt"),
            AttributeError::StepTooLarge => f.write_str("lt + 2*st must be less than gt"),
            AttributeError::NegativeStep => f.write_str("st must be 0 or more"),
            AttributeError::NotAllowedAtLevel(n) => {
                write!(f, "attribute {n} cannot be attached at this level")
            }
            AttributeError::NotNumeric(n) => {
                write!(f, "attribute {n} is only allowed on numeric resources")
            }
            AttributeError::NotBoolean => f.write_str("attribute edge is only allowed on boolean resources"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for AttributeError {}

/// One attribute value, typed by attribute (internal: lets the per-attribute
/// code be written once, keyed by [`AttributeName`]).
#[derive(Debug, Clone, PartialEq)]
enum AttrValue {
    /// pmin, pmax, epmin, epmax, hqmax.
    Seconds(u32),
    /// gt, lt, st.
    Number(f64),
    /// edge, con.
    Flag(bool),
    /// dim, ssid.
    Id(u16),
    /// uri.
    Text(String),
    /// ver, lwm2m.
    Version(Version),
}

/// The attributes attached at one level (or, after [`Attributes::inherit`],
/// in effect at one level). `None` means "not set".
///
/// The notification attributes are what Write-Attributes changes; the
/// properties (`dim`, `ssid`, `uri`, `ver`, `lwm2m`) describe the entity
/// itself and only appear in Discover / Bootstrap-Discover output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attributes {
    /// Minimum period, seconds.
    pub pmin: Option<u32>,
    /// Maximum period, seconds; 0 means "no maximum".
    pub pmax: Option<u32>,
    /// Greater-than threshold.
    pub gt: Option<f64>,
    /// Less-than threshold.
    pub lt: Option<f64>,
    /// Step.
    pub st: Option<f64>,
    /// Minimum evaluation period, seconds.
    pub epmin: Option<u32>,
    /// Maximum evaluation period, seconds.
    pub epmax: Option<u32>,
    /// Edge: `true` = rising (1), `false` = falling (0).
    pub edge: Option<bool>,
    /// Confirmable notifications.
    pub con: Option<bool>,
    /// Historical queue size.
    pub hqmax: Option<u32>,
    /// Dimension of a multiple-instance resource.
    pub dim: Option<u16>,
    /// Short server id.
    pub ssid: Option<u16>,
    /// Server URI.
    pub uri: Option<String>,
    /// Object version.
    pub ver: Option<Version>,
    /// LwM2M enabler version.
    pub lwm2m: Option<Version>,
}

impl Attributes {
    /// No attribute set.
    pub fn new() -> Attributes {
        Attributes::default()
    }

    /// True if no attribute is set.
    pub fn is_empty(&self) -> bool {
        AttributeName::ALL.iter().all(|&n| !self.is_set(n))
    }

    /// True if attribute `name` is set.
    pub fn is_set(&self, name: AttributeName) -> bool {
        self.get(name).is_some()
    }

    fn get(&self, name: AttributeName) -> Option<AttrValue> {
        match name {
            AttributeName::Pmin => self.pmin.map(AttrValue::Seconds),
            AttributeName::Pmax => self.pmax.map(AttrValue::Seconds),
            AttributeName::Gt => self.gt.map(AttrValue::Number),
            AttributeName::Lt => self.lt.map(AttrValue::Number),
            AttributeName::St => self.st.map(AttrValue::Number),
            AttributeName::Epmin => self.epmin.map(AttrValue::Seconds),
            AttributeName::Epmax => self.epmax.map(AttrValue::Seconds),
            AttributeName::Edge => self.edge.map(AttrValue::Flag),
            AttributeName::Con => self.con.map(AttrValue::Flag),
            AttributeName::Hqmax => self.hqmax.map(AttrValue::Seconds),
            AttributeName::Dim => self.dim.map(AttrValue::Id),
            AttributeName::Ssid => self.ssid.map(AttrValue::Id),
            AttributeName::Uri => self.uri.clone().map(AttrValue::Text),
            AttributeName::Ver => self.ver.map(AttrValue::Version),
            AttributeName::Lwm2m => self.lwm2m.map(AttrValue::Version),
        }
    }

    /// Stores `value` (already parsed for `name` by [`parse_value`], so the
    /// variant always matches the attribute).
    fn put(&mut self, name: AttributeName, value: AttrValue) {
        match (name, value) {
            (AttributeName::Pmin, AttrValue::Seconds(v)) => self.pmin = Some(v),
            (AttributeName::Pmax, AttrValue::Seconds(v)) => self.pmax = Some(v),
            (AttributeName::Gt, AttrValue::Number(v)) => self.gt = Some(v),
            (AttributeName::Lt, AttrValue::Number(v)) => self.lt = Some(v),
            (AttributeName::St, AttrValue::Number(v)) => self.st = Some(v),
            (AttributeName::Epmin, AttrValue::Seconds(v)) => self.epmin = Some(v),
            (AttributeName::Epmax, AttrValue::Seconds(v)) => self.epmax = Some(v),
            (AttributeName::Edge, AttrValue::Flag(v)) => self.edge = Some(v),
            (AttributeName::Con, AttrValue::Flag(v)) => self.con = Some(v),
            (AttributeName::Hqmax, AttrValue::Seconds(v)) => self.hqmax = Some(v),
            (AttributeName::Dim, AttrValue::Id(v)) => self.dim = Some(v),
            (AttributeName::Ssid, AttrValue::Id(v)) => self.ssid = Some(v),
            (AttributeName::Uri, AttrValue::Text(v)) => self.uri = Some(v),
            (AttributeName::Ver, AttrValue::Version(v)) => self.ver = Some(v),
            (AttributeName::Lwm2m, AttrValue::Version(v)) => self.lwm2m = Some(v),
            // parse_value never pairs a name with another variant.
            _ => {}
        }
    }

    /// Removes attribute `name`.
    pub fn unset(&mut self, name: AttributeName) {
        match name {
            AttributeName::Pmin => self.pmin = None,
            AttributeName::Pmax => self.pmax = None,
            AttributeName::Gt => self.gt = None,
            AttributeName::Lt => self.lt = None,
            AttributeName::St => self.st = None,
            AttributeName::Epmin => self.epmin = None,
            AttributeName::Epmax => self.epmax = None,
            AttributeName::Edge => self.edge = None,
            AttributeName::Con => self.con = None,
            AttributeName::Hqmax => self.hqmax = None,
            AttributeName::Dim => self.dim = None,
            AttributeName::Ssid => self.ssid = None,
            AttributeName::Uri => self.uri = None,
            AttributeName::Ver => self.ver = None,
            AttributeName::Lwm2m => self.lwm2m = None,
        }
    }

    /// Parses `value` as attribute `name` and sets it (syntax checks only; see
    /// [`Attributes::validate`] for the rules between attributes).
    pub fn set_from_str(&mut self, name: AttributeName, value: &str) -> Result<(), AttributeError> {
        let v = parse_value(name, value)?;
        self.put(name, v);
        Ok(())
    }

    /// The value of `name` as written in a query or link (`None` if unset).
    pub fn value_string(&self, name: AttributeName) -> Option<String> {
        self.get(name).map(|v| format_value(&v))
    }

    /// Parses CoAP Uri-Query options (`["pmin=10", "pmax=60", "gt=3.5"]`).
    ///
    /// Every item must be `name=value` with a known attribute name; each
    /// attribute at most once. Values are checked for syntax and range (a
    /// negative period, `edge=2`, `gt=abc` are errors) but not against each
    /// other: call [`Attributes::validate`] or [`Attributes::validate_for`].
    /// Uri-Query options arrive already percent-decoded, so no decoding happens here.
    pub fn from_query<'a, I>(items: I) -> Result<Attributes, AttributeError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut attrs = Attributes::new();
        for item in items {
            let (name, value) = split_query_item(item)?;
            let value = value.ok_or(AttributeError::MissingValue(name))?;
            if attrs.is_set(name) {
                return Err(AttributeError::Duplicate(name));
            }
            attrs.set_from_str(name, value)?;
        }
        Ok(attrs)
    }

    /// The attributes as Uri-Query strings, in [`AttributeName::ALL`] order.
    pub fn to_query(&self) -> Vec<String> {
        AttributeName::ALL
            .iter()
            .filter_map(|&n| self.value_string(n).map(|v| query_item(n, &v)))
            .collect()
    }

    /// Checks the rules between attributes that hold at any level.
    ///
    /// * pmin ≤ pmax, unless pmax is 0 ("no maximum"). TS Core 1.1 §5.1.2
    ///   (and 1.2 §7.3.2) says a pmax smaller than pmin "MUST be ignored for
    ///   that Resource" rather than rejected; we reject it at Write-Attributes
    ///   time as Leshan does, since the server asked for something the client
    ///   would silently drop. Inherited combinations can still end up with
    ///   pmax < pmin; notification code uses [`Attributes::effective_pmax`].
    /// * epmin ≤ epmax. TS Core 1.2 Table 7.3.2-1 says epmax "must be greater
    ///   than" epmin in lower case (not normative per RFC 8174); equality is
    ///   harmless (one evaluation per period) so only epmin > epmax is refused.
    /// * lt < gt, and lt + 2·st < gt when all three are set: TS Core 1.1 §5.1.2
    ///   / 1.2 §7.3.2 "the operation MUST be rejected when the rules above are
    ///   violated". We check the resulting set, not only the attributes of one
    ///   request, so an earlier gt plus a new lt cannot form an invalid pair.
    /// * st ≥ 0 (a step is a distance) and every threshold finite: the TS
    ///   grammar for gt/lt/st has no NaN or infinity.
    pub fn validate(&self) -> Result<(), AttributeError> {
        for (name, v) in [
            (AttributeName::Gt, self.gt),
            (AttributeName::Lt, self.lt),
            (AttributeName::St, self.st),
        ] {
            if v.is_some_and(|v| !v.is_finite()) {
                return Err(AttributeError::InvalidNumber(name));
            }
        }
        if let (Some(pmin), Some(pmax)) = (self.pmin, self.pmax) {
            if pmax != 0 && pmin > pmax {
                return Err(AttributeError::PminAbovePmax);
            }
        }
        if let (Some(epmin), Some(epmax)) = (self.epmin, self.epmax) {
            if epmin > epmax {
                return Err(AttributeError::EpminAboveEpmax);
            }
        }
        if self.st.is_some_and(|st| st < 0.0) {
            return Err(AttributeError::NegativeStep);
        }
        if let (Some(lt), Some(gt)) = (self.lt, self.gt) {
            if lt >= gt {
                return Err(AttributeError::LtNotBelowGt);
            }
            if let Some(st) = self.st {
                // An overflow to infinity compares as "not below gt": rejected, as it should be.
                if lt + 2.0 * st >= gt {
                    return Err(AttributeError::StepTooLarge);
                }
            }
        }
        if self.uri.as_deref() == Some("") {
            return Err(AttributeError::InvalidUri);
        }
        Ok(())
    }

    /// [`Attributes::validate`] plus where each attribute may be attached, for
    /// attributes at `path` (Write-Attributes target). `resource` is the model
    /// of the resource at `path` when the path has a resource id and the model
    /// is known; with no model, the type rules cannot be checked and pass.
    ///
    /// Attachment rules (TS Core 1.1 Table 5.1.2-2, 1.2 Table 7.3.2-1 column
    /// "Attachment"; 1.2 Table 7.3.1-1 for the properties):
    /// * nothing attaches to `/` except `lwm2m` (Write-Attributes needs an Object ID);
    /// * pmin, pmax, epmin, epmax, con, hqmax: object, instance, resource, resource instance;
    /// * gt, lt, st: resource or resource instance of a numeric type (Integer,
    ///   Unsigned Integer, Float);
    /// * edge: resource or resource instance of type Boolean;
    /// * ver on objects, ssid/uri on object instances, dim on resources,
    ///   lwm2m on the root link only.
    pub fn validate_for(
        &self,
        path: &Path,
        resource: Option<&ResourceModel>,
    ) -> Result<(), AttributeError> {
        self.validate()?;
        let depth = path.depth();
        let resource_type = if depth >= 3 {
            resource.map(|r| r.resource_type)
        } else {
            None
        };
        for name in AttributeName::ALL {
            if !self.is_set(name) {
                continue;
            }
            let allowed = match name {
                AttributeName::Lwm2m => depth == 0,
                AttributeName::Ver => depth == 1,
                AttributeName::Ssid | AttributeName::Uri => depth == 2,
                AttributeName::Dim => depth == 3,
                AttributeName::Gt | AttributeName::Lt | AttributeName::St | AttributeName::Edge => {
                    depth >= 3
                }
                AttributeName::Pmin
                | AttributeName::Pmax
                | AttributeName::Epmin
                | AttributeName::Epmax
                | AttributeName::Con
                | AttributeName::Hqmax => depth >= 1,
            };
            if !allowed {
                return Err(AttributeError::NotAllowedAtLevel(name));
            }
            match (name, resource_type) {
                (AttributeName::Gt | AttributeName::Lt | AttributeName::St, Some(t))
                    if !is_numeric(t) =>
                {
                    return Err(AttributeError::NotNumeric(name));
                }
                (AttributeName::Edge, Some(t)) if t != ResourceType::Boolean => {
                    return Err(AttributeError::NotBoolean);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The attributes in effect at the most specific of `levels`: `levels` go
    /// from the least specific (object) to the most specific (object →
    /// instance → resource → resource instance), and for each notification
    /// attribute the most specific level that sets it wins (precedence rules
    /// of TS Core 1.0 §5.1.1, 1.2 §7.3.2: a lower level overrides a higher one).
    ///
    /// Properties (dim, ssid, uri, ver, lwm2m) describe one entity and are not
    /// inherited: they come from the most specific level only.
    ///
    /// ```
    /// use lwm2m_core::model::Attributes;
    /// let object = Attributes { pmin: Some(10), pmax: Some(60), ..Attributes::new() };
    /// let resource = Attributes { pmax: Some(30), gt: Some(5.0), ..Attributes::new() };
    /// let eff = Attributes::inherit(&[&object, &Attributes::new(), &resource]);
    /// assert_eq!((eff.pmin, eff.pmax, eff.gt), (Some(10), Some(30), Some(5.0)));
    /// ```
    pub fn inherit(levels: &[&Attributes]) -> Attributes {
        let mut out = Attributes::new();
        for level in levels {
            for name in AttributeName::ALL {
                if name.is_notification() {
                    if let Some(v) = level.get(name) {
                        out.put(name, v);
                    }
                }
            }
        }
        if let Some(last) = levels.last() {
            out.dim = last.dim;
            out.ssid = last.ssid;
            out.uri.clone_from(&last.uri);
            out.ver = last.ver;
            out.lwm2m = last.lwm2m;
        }
        out
    }

    /// The pmax that notification timing should use: `None` when unset, 0
    /// ("MUST be ignored", TS Core 1.2 Table 7.3.2-1) or smaller than pmin
    /// ("MUST be ignored for that Resource", TS Core 1.1 §5.1.2).
    pub fn effective_pmax(&self) -> Option<u32> {
        match self.pmax {
            Some(0) | None => None,
            Some(p) if self.pmin.is_some_and(|m| p < m) => None,
            p => p,
        }
    }

    /// Only the notification attributes (drops dim, ssid, uri, ver, lwm2m).
    pub fn notification_only(&self) -> Attributes {
        Attributes {
            dim: None,
            ssid: None,
            uri: None,
            ver: None,
            lwm2m: None,
            ..self.clone()
        }
    }
}

fn is_numeric(t: ResourceType) -> bool {
    matches!(
        t,
        ResourceType::Integer | ResourceType::UnsignedInteger | ResourceType::Float
    )
}

/// A change to one attribute in a Write-Attributes request.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeChange<T> {
    /// `?name=value`: set the attribute at the target level.
    Set(T),
    /// `?name` without value: remove the attribute at the target level
    /// (TS Core 1.0 §5.4.4 Table 13: "When an Attribute is specified
    /// without value, it means this Attribute value is unset").
    Unset,
}

/// The body of a Write-Attributes request: for each notification attribute,
/// nothing, a new value, or "unset". Properties cannot be written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttributeUpdate {
    /// pmin.
    pub pmin: Option<AttributeChange<u32>>,
    /// pmax.
    pub pmax: Option<AttributeChange<u32>>,
    /// gt.
    pub gt: Option<AttributeChange<f64>>,
    /// lt.
    pub lt: Option<AttributeChange<f64>>,
    /// st.
    pub st: Option<AttributeChange<f64>>,
    /// epmin.
    pub epmin: Option<AttributeChange<u32>>,
    /// epmax.
    pub epmax: Option<AttributeChange<u32>>,
    /// edge.
    pub edge: Option<AttributeChange<bool>>,
    /// con.
    pub con: Option<AttributeChange<bool>>,
    /// hqmax.
    pub hqmax: Option<AttributeChange<u32>>,
}

/// Maps one typed field to the untyped change used internally.
fn untyped<T: Clone>(
    c: &Option<AttributeChange<T>>,
    wrap: fn(T) -> AttrValue,
) -> Option<AttributeChange<AttrValue>> {
    c.as_ref().map(|c| match c {
        AttributeChange::Set(v) => AttributeChange::Set(wrap(v.clone())),
        AttributeChange::Unset => AttributeChange::Unset,
    })
}

impl AttributeUpdate {
    /// True if the update changes nothing.
    pub fn is_empty(&self) -> bool {
        AttributeName::ALL.iter().all(|&n| self.change(n).is_none())
    }

    fn change(&self, name: AttributeName) -> Option<AttributeChange<AttrValue>> {
        match name {
            AttributeName::Pmin => untyped(&self.pmin, AttrValue::Seconds),
            AttributeName::Pmax => untyped(&self.pmax, AttrValue::Seconds),
            AttributeName::Gt => untyped(&self.gt, AttrValue::Number),
            AttributeName::Lt => untyped(&self.lt, AttrValue::Number),
            AttributeName::St => untyped(&self.st, AttrValue::Number),
            AttributeName::Epmin => untyped(&self.epmin, AttrValue::Seconds),
            AttributeName::Epmax => untyped(&self.epmax, AttrValue::Seconds),
            AttributeName::Edge => untyped(&self.edge, AttrValue::Flag),
            AttributeName::Con => untyped(&self.con, AttrValue::Flag),
            AttributeName::Hqmax => untyped(&self.hqmax, AttrValue::Seconds),
            _ => None,
        }
    }

    fn set_change(&mut self, name: AttributeName, change: AttributeChange<AttrValue>) {
        use AttributeChange::{Set, Unset};
        fn typed<T>(
            c: AttributeChange<AttrValue>,
            f: fn(AttrValue) -> Option<T>,
        ) -> Option<AttributeChange<T>> {
            match c {
                Set(v) => f(v).map(Set),
                Unset => Some(Unset),
            }
        }
        let secs = |v| match v {
            AttrValue::Seconds(s) => Some(s),
            _ => None,
        };
        let num = |v| match v {
            AttrValue::Number(n) => Some(n),
            _ => None,
        };
        let flag = |v| match v {
            AttrValue::Flag(b) => Some(b),
            _ => None,
        };
        match name {
            AttributeName::Pmin => self.pmin = typed(change, secs),
            AttributeName::Pmax => self.pmax = typed(change, secs),
            AttributeName::Gt => self.gt = typed(change, num),
            AttributeName::Lt => self.lt = typed(change, num),
            AttributeName::St => self.st = typed(change, num),
            AttributeName::Epmin => self.epmin = typed(change, secs),
            AttributeName::Epmax => self.epmax = typed(change, secs),
            AttributeName::Edge => self.edge = typed(change, flag),
            AttributeName::Con => self.con = typed(change, flag),
            AttributeName::Hqmax => self.hqmax = typed(change, secs),
            _ => {}
        }
    }

    /// Parses the Uri-Query options of a Write-Attributes request:
    /// `name=value` sets, a bare `name` unsets. Unknown names, `<PROPERTIES>`
    /// names ([`AttributeError::ReadOnly`]), duplicates and bad values are errors.
    ///
    /// ```
    /// use lwm2m_core::model::{AttributeChange, AttributeUpdate};
    /// let u = AttributeUpdate::from_query(["pmin=5", "gt"]).unwrap();
    /// assert_eq!(u.pmin, Some(AttributeChange::Set(5)));
    /// assert_eq!(u.gt, Some(AttributeChange::Unset));
    /// assert_eq!(u.to_query(), ["pmin=5", "gt"]);
    /// ```
    pub fn from_query<'a, I>(items: I) -> Result<AttributeUpdate, AttributeError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut update = AttributeUpdate::default();
        for item in items {
            let (name, value) = split_query_item(item)?;
            if !name.is_notification() {
                return Err(AttributeError::ReadOnly(name));
            }
            if update.change(name).is_some() {
                return Err(AttributeError::Duplicate(name));
            }
            let change = match value {
                None => AttributeChange::Unset,
                Some(v) => AttributeChange::Set(parse_value(name, v)?),
            };
            update.set_change(name, change);
        }
        Ok(update)
    }

    /// The update as Uri-Query strings, in [`AttributeName::ALL`] order.
    pub fn to_query(&self) -> Vec<String> {
        AttributeName::ALL
            .iter()
            .filter_map(|&n| {
                self.change(n).map(|c| match c {
                    AttributeChange::Set(v) => query_item(n, &format_value(&v)),
                    AttributeChange::Unset => n.as_str().to_string(),
                })
            })
            .collect()
    }

    /// The attributes of a level after this update: set values replace, unset
    /// ones are removed, the rest stays. Does not validate.
    pub fn apply_to(&self, current: &Attributes) -> Attributes {
        let mut out = current.clone();
        for name in AttributeName::ALL {
            match self.change(name) {
                Some(AttributeChange::Set(v)) => out.put(name, v),
                Some(AttributeChange::Unset) => out.unset(name),
                None => {}
            }
        }
        out
    }
}

/// A whole Write-Attributes on the client side: parses `query`, applies it to
/// the attributes `current`ly attached at `path`, and validates the result for
/// that level and resource. On success the caller stores the returned set; on
/// error it answers [`AttributeError::coap_code`] and keeps `current`.
pub fn write_attributes<'a, I>(
    current: &Attributes,
    query: I,
    path: &Path,
    resource: Option<&ResourceModel>,
) -> Result<Attributes, AttributeError>
where
    I: IntoIterator<Item = &'a str>,
{
    let update = AttributeUpdate::from_query(query)?;
    let next = update.apply_to(current);
    next.validate_for(path, resource)?;
    Ok(next)
}

/// Splits `name[=value]`; `name=` (empty value) is an error, not an unset.
fn split_query_item(item: &str) -> Result<(AttributeName, Option<&str>), AttributeError> {
    let (name, value) = match item.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (item, None),
    };
    let attr = AttributeName::from_name(name)
        .ok_or_else(|| AttributeError::UnknownAttribute(truncated(name, 32)))?;
    if value == Some("") {
        return Err(AttributeError::MissingValue(attr));
    }
    Ok((attr, value))
}

fn query_item(name: AttributeName, value: &str) -> String {
    let mut s = String::with_capacity(name.as_str().len() + 1 + value.len());
    s.push_str(name.as_str());
    s.push('=');
    s.push_str(value);
    s
}

/// The first `max` bytes of `s`, cut at a character boundary.
fn truncated(s: &str, max: usize) -> String {
    let mut end = 0;
    for (i, c) in s.char_indices() {
        let next = i + c.len_utf8();
        if next > max {
            break;
        }
        end = next;
    }
    s.get(..end).unwrap_or("").to_string()
}

/// Parses the textual `value` of attribute `name`.
fn parse_value(name: AttributeName, value: &str) -> Result<AttrValue, AttributeError> {
    if value.is_empty() {
        return Err(AttributeError::MissingValue(name));
    }
    Ok(match name {
        AttributeName::Pmin
        | AttributeName::Pmax
        | AttributeName::Epmin
        | AttributeName::Epmax
        | AttributeName::Hqmax => AttrValue::Seconds(parse_seconds(name, value)?),
        AttributeName::Gt | AttributeName::Lt | AttributeName::St => {
            AttrValue::Number(parse_decimal(value).ok_or(AttributeError::InvalidNumber(name))?)
        }
        AttributeName::Edge | AttributeName::Con => AttrValue::Flag(match value {
            "0" => false,
            "1" => true,
            _ => return Err(AttributeError::InvalidFlag(name)),
        }),
        AttributeName::Dim => AttrValue::Id(parse_id_value(name, value, 0, u16::MAX)?),
        // Short Server ID range 1..=65534 (TS Core Appendix E.1/E.2, resource 0/x/10 and 1/x/0).
        AttributeName::Ssid => AttrValue::Id(parse_id_value(name, value, 1, 65534)?),
        AttributeName::Uri => AttrValue::Text(value.to_string()),
        AttributeName::Ver | AttributeName::Lwm2m => AttrValue::Version(
            value
                .parse()
                .map_err(|_| AttributeError::InvalidVersion(name))?,
        ),
    })
}

/// `1*DIGIT` seconds (TS Core 1.2 Table 7.3.2-1). A leading `-` before digits
/// is reported as a negative period rather than as garbage, since that is
/// what the peer meant.
fn parse_seconds(name: AttributeName, s: &str) -> Result<u32, AttributeError> {
    if let Some(rest) = s.strip_prefix('-') {
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AttributeError::NegativePeriod(name));
        }
        return Err(AttributeError::InvalidNumber(name));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AttributeError::InvalidNumber(name));
    }
    // All digits: the only failure left is overflow.
    s.parse().map_err(|_| AttributeError::OutOfRange(name))
}

fn parse_id_value(name: AttributeName, s: &str, min: u16, max: u16) -> Result<u16, AttributeError> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AttributeError::InvalidNumber(name));
    }
    match s.parse::<u16>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(AttributeError::OutOfRange(name)),
    }
}

/// gt/lt/st: the TS grammar is `1*DIGIT ["." 1*DIGIT]`; we also accept a
/// leading `-` (thresholds below zero, e.g. temperatures, are common and
/// Leshan/Anjay send them) and an exponent (Anjay writes `2.2E-308`).
/// NaN and infinities are refused (also when the exponent overflows).
fn parse_decimal(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(|c| c.is_ascii_digit()) {
            *i += 1;
        }
        *i > start
    };
    if b.first() == Some(&b'-') {
        i += 1;
    }
    if !digits(&mut i) {
        return None;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return None;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Shortest text that parses back to the same value: plain decimal (`50`,
/// `42.2`) unless that gets long (`1e300`), then exponent form.
fn format_number(v: f64) -> String {
    let plain = alloc::format!("{v}");
    if plain.len() <= 24 {
        plain
    } else {
        alloc::format!("{v:e}")
    }
}

fn format_value(v: &AttrValue) -> String {
    match v {
        AttrValue::Seconds(s) => s.to_string(),
        AttrValue::Number(n) => format_number(*n),
        AttrValue::Flag(b) => (if *b { "1" } else { "0" }).to_string(),
        AttrValue::Id(i) => i.to_string(),
        AttrValue::Text(t) => t.clone(),
        AttrValue::Version(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use proptest::prelude::*;

    use crate::model::Operations;

    fn q(items: &[&str]) -> Result<Attributes, AttributeError> {
        Attributes::from_query(items.iter().copied())
    }

    fn model(t: ResourceType) -> ResourceModel {
        ResourceModel {
            id: 5700,
            name: "Sensor Value".into(),
            operations: Operations::Read,
            multiple: false,
            mandatory: true,
            resource_type: t,
            range: String::new(),
            units: String::new(),
            description: String::new(),
        }
    }

    #[test]
    fn parses_brief_example() {
        let a = q(&["pmin=10", "pmax=60", "gt=3.5"]).unwrap();
        assert_eq!(
            a,
            Attributes {
                pmin: Some(10),
                pmax: Some(60),
                gt: Some(3.5),
                ..Attributes::new()
            }
        );
        assert_eq!(a.to_query(), ["pmin=10", "pmax=60", "gt=3.5"]);
    }

    #[test]
    fn parses_every_attribute() {
        let a = q(&[
            "hqmax=8",
            "con=1",
            "edge=0",
            "epmax=20",
            "epmin=2",
            "st=0.5",
            "lt=-10",
            "gt=42.2",
            "pmax=0",
            "pmin=0",
            "uri=coaps://s.example.com",
            "ssid=101",
            "dim=8",
            "ver=1.2",
            "lwm2m=1.1",
        ])
        .unwrap();
        assert_eq!(a.hqmax, Some(8));
        assert_eq!(a.con, Some(true));
        assert_eq!(a.edge, Some(false));
        assert_eq!((a.epmin, a.epmax), (Some(2), Some(20)));
        assert_eq!((a.lt, a.gt, a.st), (Some(-10.0), Some(42.2), Some(0.5)));
        assert_eq!(a.uri.as_deref(), Some("coaps://s.example.com"));
        assert_eq!((a.ssid, a.dim), (Some(101), Some(8)));
        assert_eq!(a.ver, Some(Version::new(1, 2)));
        assert_eq!(a.lwm2m, Some(Version::new(1, 1)));
        // Output order is fixed, whatever the input order.
        assert_eq!(
            a.to_query(),
            [
                "lwm2m=1.1",
                "ver=1.2",
                "dim=8",
                "ssid=101",
                "uri=coaps://s.example.com",
                "pmin=0",
                "pmax=0",
                "gt=42.2",
                "lt=-10",
                "st=0.5",
                "epmin=2",
                "epmax=20",
                "edge=0",
                "con=1",
                "hqmax=8",
            ]
        );
    }

    #[test]
    fn syntax_errors_are_typed() {
        use AttributeError as E;
        use AttributeName as N;
        assert_eq!(q(&["foo=1"]), Err(E::UnknownAttribute("foo".into())));
        assert_eq!(q(&["PMIN=1"]), Err(E::UnknownAttribute("PMIN".into())));
        assert_eq!(q(&["pmin=abc"]), Err(E::InvalidNumber(N::Pmin)));
        assert_eq!(q(&["pmin=1.5"]), Err(E::InvalidNumber(N::Pmin)));
        assert_eq!(q(&["pmin=+1"]), Err(E::InvalidNumber(N::Pmin)));
        assert_eq!(q(&["pmin=-1"]), Err(E::NegativePeriod(N::Pmin)));
        assert_eq!(q(&["epmax=-30"]), Err(E::NegativePeriod(N::Epmax)));
        assert_eq!(q(&["pmin=-"]), Err(E::InvalidNumber(N::Pmin)));
        assert_eq!(q(&["pmax=4294967296"]), Err(E::OutOfRange(N::Pmax)));
        assert_eq!(q(&["pmax=4294967295"]).unwrap().pmax, Some(u32::MAX));
        assert_eq!(q(&["pmin"]), Err(E::MissingValue(N::Pmin)));
        assert_eq!(q(&["pmin="]), Err(E::MissingValue(N::Pmin)));
        assert_eq!(q(&["pmin=1", "pmin=2"]), Err(E::Duplicate(N::Pmin)));
        assert_eq!(q(&["edge=2"]), Err(E::InvalidFlag(N::Edge)));
        assert_eq!(q(&["con=true"]), Err(E::InvalidFlag(N::Con)));
        assert_eq!(q(&["gt=1."]), Err(E::InvalidNumber(N::Gt)));
        assert_eq!(q(&["gt=.5"]), Err(E::InvalidNumber(N::Gt)));
        assert_eq!(q(&["gt=NaN"]), Err(E::InvalidNumber(N::Gt)));
        assert_eq!(q(&["gt=inf"]), Err(E::InvalidNumber(N::Gt)));
        assert_eq!(q(&["gt=1e999"]), Err(E::InvalidNumber(N::Gt)));
        assert_eq!(q(&["lt=1e"]), Err(E::InvalidNumber(N::Lt)));
        assert_eq!(q(&["st= 1"]), Err(E::InvalidNumber(N::St)));
        assert_eq!(q(&["dim=65536"]), Err(E::OutOfRange(N::Dim)));
        assert_eq!(q(&["ssid=0"]), Err(E::OutOfRange(N::Ssid)));
        assert_eq!(q(&["ssid=65535"]), Err(E::OutOfRange(N::Ssid)));
        assert_eq!(q(&["ver=1"]), Err(E::InvalidVersion(N::Ver)));
        assert_eq!(q(&["lwm2m=1.x"]), Err(E::InvalidVersion(N::Lwm2m)));
        // Anjay writes thresholds with an exponent; accept it.
        assert_eq!(
            q(&["gt=-2.2250738585072014E-308"]).unwrap().gt,
            Some(-2.2250738585072014E-308)
        );
        for e in [E::PminAbovePmax, E::UnknownAttribute("x".into())] {
            assert_eq!(e.coap_code(), (4, 0));
        }
    }

    #[test]
    fn unknown_name_is_truncated() {
        let long = "x".repeat(1000);
        match q(&[long.as_str()]) {
            Err(AttributeError::UnknownAttribute(n)) => assert_eq!(n.len(), 32),
            other => panic!("{other:?}"),
        }
        assert_eq!(truncated("ééé", 5), "éé");
    }

    // --- validation rules, one test each ---

    #[test]
    fn rule_pmin_not_above_pmax() {
        assert_eq!(
            q(&["pmin=61", "pmax=60"]).unwrap().validate(),
            Err(AttributeError::PminAbovePmax)
        );
        q(&["pmin=60", "pmax=60"]).unwrap().validate().unwrap();
        // pmax = 0 means "no maximum" (TS 1.2 Table 7.3.2-1), not "smaller than pmin".
        q(&["pmin=60", "pmax=0"]).unwrap().validate().unwrap();
    }

    #[test]
    fn rule_epmin_not_above_epmax() {
        assert_eq!(
            q(&["epmin=10", "epmax=5"]).unwrap().validate(),
            Err(AttributeError::EpminAboveEpmax)
        );
        q(&["epmin=5", "epmax=5"]).unwrap().validate().unwrap();
    }

    #[test]
    fn rule_lt_below_gt() {
        assert_eq!(
            q(&["lt=50", "gt=50"]).unwrap().validate(),
            Err(AttributeError::LtNotBelowGt)
        );
        assert_eq!(
            q(&["lt=51", "gt=50"]).unwrap().validate(),
            Err(AttributeError::LtNotBelowGt)
        );
        q(&["lt=42.2", "gt=50"]).unwrap().validate().unwrap();
    }

    #[test]
    fn rule_lt_plus_two_steps_below_gt() {
        // Leshan's example: lt=10, st=2, gt=12 → 14 ≥ 12.
        assert_eq!(
            q(&["lt=10", "st=2", "gt=12"]).unwrap().validate(),
            Err(AttributeError::StepTooLarge)
        );
        // Boundary: lt + 2st == gt is rejected (strict "<").
        assert_eq!(
            q(&["lt=10", "st=1", "gt=12"]).unwrap().validate(),
            Err(AttributeError::StepTooLarge)
        );
        q(&["lt=10", "st=0.9", "gt=12"])
            .unwrap()
            .validate()
            .unwrap();
        // Overflow to infinity must not sneak through.
        assert_eq!(
            q(&["lt=-1e308", "st=1e308", "gt=1e308"])
                .unwrap()
                .validate(),
            Err(AttributeError::StepTooLarge)
        );
        // st without both thresholds has nothing to be compared with.
        q(&["st=1000", "gt=12"]).unwrap().validate().unwrap();
    }

    #[test]
    fn rule_step_not_negative() {
        assert_eq!(
            q(&["st=-0.5"]).unwrap().validate(),
            Err(AttributeError::NegativeStep)
        );
        q(&["st=0"]).unwrap().validate().unwrap();
    }

    #[test]
    fn rule_thresholds_finite_when_built_by_hand() {
        let a = Attributes {
            gt: Some(f64::NAN),
            ..Attributes::new()
        };
        assert_eq!(
            a.validate(),
            Err(AttributeError::InvalidNumber(AttributeName::Gt))
        );
    }

    #[test]
    fn rule_uri_not_empty() {
        let a = Attributes {
            uri: Some(String::new()),
            ..Attributes::new()
        };
        assert_eq!(a.validate(), Err(AttributeError::InvalidUri));
    }

    #[test]
    fn rule_thresholds_only_on_resources() {
        let a = q(&["gt=5"]).unwrap();
        for p in [Path::Object(3303), Path::Instance(3303, 0)] {
            assert_eq!(
                a.validate_for(&p, None),
                Err(AttributeError::NotAllowedAtLevel(AttributeName::Gt))
            );
        }
        a.validate_for(&Path::Resource(3303, 0, 5700), None)
            .unwrap();
        a.validate_for(&Path::ResourceInstance(3303, 0, 5700, 1), None)
            .unwrap();
        let st = q(&["st=1"]).unwrap();
        assert_eq!(
            st.validate_for(&Path::Instance(3303, 0), None),
            Err(AttributeError::NotAllowedAtLevel(AttributeName::St))
        );
    }

    #[test]
    fn rule_thresholds_only_on_numeric_resources() {
        let a = q(&["lt=5"]).unwrap();
        let p = Path::Resource(3303, 0, 5700);
        for t in [
            ResourceType::Integer,
            ResourceType::UnsignedInteger,
            ResourceType::Float,
        ] {
            a.validate_for(&p, Some(&model(t))).unwrap();
        }
        for t in [
            ResourceType::String,
            ResourceType::Boolean,
            ResourceType::Opaque,
            ResourceType::Time,
            ResourceType::ObjLnk,
        ] {
            assert_eq!(
                a.validate_for(&p, Some(&model(t))),
                Err(AttributeError::NotNumeric(AttributeName::Lt)),
                "{t:?}"
            );
        }
    }

    #[test]
    fn rule_edge_only_on_boolean_resources() {
        let a = q(&["edge=1"]).unwrap();
        let p = Path::Resource(3342, 0, 5500);
        a.validate_for(&p, Some(&model(ResourceType::Boolean)))
            .unwrap();
        assert_eq!(
            a.validate_for(&p, Some(&model(ResourceType::Integer))),
            Err(AttributeError::NotBoolean)
        );
        assert_eq!(
            a.validate_for(&Path::Instance(3342, 0), None),
            Err(AttributeError::NotAllowedAtLevel(AttributeName::Edge))
        );
    }

    #[test]
    fn rule_periods_at_any_level_but_root() {
        let a = q(&["pmin=1", "pmax=2", "epmin=1", "epmax=2", "con=1", "hqmax=3"]).unwrap();
        for p in [
            Path::Object(3),
            Path::Instance(3, 0),
            Path::Resource(3, 0, 9),
            Path::ResourceInstance(3, 0, 7, 0),
        ] {
            a.validate_for(&p, Some(&model(ResourceType::String)))
                .unwrap();
        }
        assert_eq!(
            a.validate_for(&Path::Root, None),
            Err(AttributeError::NotAllowedAtLevel(AttributeName::Pmin))
        );
    }

    #[test]
    fn rule_properties_at_their_level() {
        use AttributeName as N;
        let cases: [(&str, Path, Path); 5] = [
            ("lwm2m=1.1", Path::Root, Path::Object(1)),
            ("ver=1.1", Path::Object(3), Path::Instance(3, 0)),
            ("ssid=1", Path::Instance(1, 0), Path::Object(1)),
            (
                "uri=coap://x",
                Path::Instance(0, 0),
                Path::Resource(0, 0, 0),
            ),
            (
                "dim=2",
                Path::Resource(3, 0, 7),
                Path::ResourceInstance(3, 0, 7, 0),
            ),
        ];
        for (item, good, bad) in cases {
            let a = q(&[item]).unwrap();
            a.validate_for(&good, None).unwrap();
            let name = N::from_name(item.split('=').next().unwrap()).unwrap();
            assert_eq!(
                a.validate_for(&bad, None),
                Err(AttributeError::NotAllowedAtLevel(name))
            );
        }
    }

    #[test]
    fn effective_pmax_ignores_zero_and_below_pmin() {
        let a = |pmin, pmax| Attributes {
            pmin,
            pmax,
            ..Attributes::new()
        };
        assert_eq!(a(Some(10), Some(60)).effective_pmax(), Some(60));
        assert_eq!(a(None, Some(60)).effective_pmax(), Some(60));
        assert_eq!(a(Some(10), Some(0)).effective_pmax(), None);
        assert_eq!(a(Some(10), Some(5)).effective_pmax(), None);
        assert_eq!(a(Some(10), None).effective_pmax(), None);
    }

    // --- inheritance ---

    #[test]
    fn inheritance_most_specific_wins_per_attribute() {
        // TS Core 1.0 §5.4.2 example: </3/0/7>;dim=8;pmin=10;pmax=60;gt=50;lt=42.2
        // "with pmin assigned at the Object level, and pmax assigned at the Object Instance level".
        let object = Attributes {
            pmin: Some(10),
            pmax: Some(300),
            ver: Some(Version::new(1, 1)),
            ..Attributes::new()
        };
        let instance = Attributes {
            pmax: Some(60),
            ..Attributes::new()
        };
        let resource = Attributes {
            gt: Some(50.0),
            lt: Some(42.2),
            dim: Some(8),
            ..Attributes::new()
        };
        let eff = Attributes::inherit(&[&object, &instance, &resource]);
        assert_eq!(
            eff,
            Attributes {
                pmin: Some(10),
                pmax: Some(60),
                gt: Some(50.0),
                lt: Some(42.2),
                dim: Some(8),
                // ver belongs to the object link, it is not inherited.
                ..Attributes::new()
            }
        );
        // A resource instance level overriding the resource.
        let ri = Attributes {
            gt: Some(55.0),
            ..Attributes::new()
        };
        let eff = Attributes::inherit(&[&object, &instance, &resource, &ri]);
        assert_eq!((eff.gt, eff.lt, eff.dim), (Some(55.0), Some(42.2), None));
    }

    #[test]
    fn inheritance_of_nothing_is_empty() {
        assert!(Attributes::inherit(&[]).is_empty());
        assert!(Attributes::inherit(&[&Attributes::new(), &Attributes::new()]).is_empty());
    }

    #[test]
    fn inheritance_keeps_parent_when_child_unsets() {
        let object = q(&["pmin=10"]).unwrap();
        let instance = q(&["pmin=20"]).unwrap();
        // Write-Attributes /3/0?pmin removes the instance-level pmin; the object's applies again.
        let instance = AttributeUpdate::from_query(["pmin"])
            .unwrap()
            .apply_to(&instance);
        assert_eq!(instance.pmin, None);
        assert_eq!(Attributes::inherit(&[&object, &instance]).pmin, Some(10));
    }

    // --- Write-Attributes ---

    #[test]
    fn update_set_and_unset() {
        let u = AttributeUpdate::from_query(["pmin=5", "gt", "con=0"]).unwrap();
        assert_eq!(u.pmin, Some(AttributeChange::Set(5)));
        assert_eq!(u.gt, Some(AttributeChange::Unset));
        assert_eq!(u.con, Some(AttributeChange::Set(false)));
        assert_eq!(u.pmax, None);
        assert_eq!(u.to_query(), ["pmin=5", "gt", "con=0"]);
        let cur = q(&["pmax=60", "gt=3"]).unwrap();
        assert_eq!(
            u.apply_to(&cur),
            Attributes {
                pmin: Some(5),
                pmax: Some(60),
                con: Some(false),
                ..Attributes::new()
            }
        );
        assert!(AttributeUpdate::default().is_empty());
        assert!(!u.is_empty());
    }

    #[test]
    fn update_rejects_properties_unknown_and_duplicates() {
        use AttributeError as E;
        assert_eq!(
            AttributeUpdate::from_query(["dim=3"]),
            Err(E::ReadOnly(AttributeName::Dim))
        );
        assert_eq!(
            AttributeUpdate::from_query(["ver"]),
            Err(E::ReadOnly(AttributeName::Ver))
        );
        assert_eq!(
            AttributeUpdate::from_query(["pmin", "pmin=3"]),
            Err(E::Duplicate(AttributeName::Pmin))
        );
        assert_eq!(
            AttributeUpdate::from_query(["bogus"]),
            Err(E::UnknownAttribute("bogus".into()))
        );
        assert_eq!(
            AttributeUpdate::from_query(["pmin=-5"]),
            Err(E::NegativePeriod(AttributeName::Pmin))
        );
    }

    #[test]
    fn write_attributes_validates_the_resulting_set() {
        let p = Path::Resource(3303, 0, 5700);
        let m = model(ResourceType::Float);
        let cur = q(&["gt=50"]).unwrap();
        // lt alone is fine in the request, but with the stored gt it breaks lt < gt.
        assert_eq!(
            write_attributes(&cur, ["lt=60"], &p, Some(&m)),
            Err(AttributeError::LtNotBelowGt)
        );
        let next = write_attributes(&cur, ["lt=40", "st=2"], &p, Some(&m)).unwrap();
        assert_eq!(
            (next.lt, next.gt, next.st),
            (Some(40.0), Some(50.0), Some(2.0))
        );
        // Unsetting gt makes lt=60 acceptable.
        let next = write_attributes(&cur, ["gt", "lt=60"], &p, Some(&m)).unwrap();
        assert_eq!((next.lt, next.gt), (Some(60.0), None));
        assert_eq!(
            write_attributes(&Attributes::new(), ["pmin=61", "pmax=60"], &p, None),
            Err(AttributeError::PminAbovePmax)
        );
        assert_eq!(
            write_attributes(&Attributes::new(), ["gt=1"], &Path::Instance(3303, 0), None),
            Err(AttributeError::NotAllowedAtLevel(AttributeName::Gt))
        );
    }

    #[test]
    fn version_parse() {
        assert_eq!("10.25".parse(), Ok(Version::new(10, 25)));
        for bad in [
            "", ".", "1.", ".1", "1.1.1", "a.b", "-1.0", "1.+1", "70000.0",
        ] {
            assert_eq!(bad.parse::<Version>(), Err(VersionError), "{bad}");
        }
        assert!(Version::new(1, 0) < Version::new(1, 1));
    }

    #[test]
    fn number_format_round_trips_and_is_short() {
        for (v, s) in [
            (50.0, "50"),
            (42.2, "42.2"),
            (-0.5, "-0.5"),
            (1e300, "1e300"),
            (1.5e-300, "1.5e-300"),
        ] {
            assert_eq!(format_number(v), s);
            assert_eq!(parse_decimal(s), Some(v));
        }
    }

    fn arb_attributes() -> impl Strategy<Value = Attributes> {
        let num = || proptest::option::of(proptest::num::f64::NORMAL | proptest::num::f64::ZERO);
        let period = || proptest::option::of(any::<u32>());
        (
            (period(), period(), num(), num(), num(), period(), period()),
            (
                proptest::option::of(any::<bool>()),
                proptest::option::of(any::<bool>()),
                period(),
                proptest::option::of(any::<u16>()),
                proptest::option::of(1u16..=65534),
                proptest::option::of("[a-z][a-z0-9+.:/_-]{0,30}"),
                proptest::option::of((any::<u16>(), any::<u16>())),
                proptest::option::of((any::<u16>(), any::<u16>())),
            ),
        )
            .prop_map(
                |(
                    (pmin, pmax, gt, lt, st, epmin, epmax),
                    (edge, con, hqmax, dim, ssid, uri, ver, lwm2m),
                )| {
                    Attributes {
                        pmin,
                        pmax,
                        gt,
                        lt,
                        st,
                        epmin,
                        epmax,
                        edge,
                        con,
                        hqmax,
                        dim,
                        ssid,
                        uri,
                        ver: ver.map(|(a, b)| Version::new(a, b)),
                        lwm2m: lwm2m.map(|(a, b)| Version::new(a, b)),
                    }
                },
            )
    }

    fn arb_change<T: core::fmt::Debug + Clone + 'static>(
        s: impl Strategy<Value = T> + 'static,
    ) -> impl Strategy<Value = Option<AttributeChange<T>>> {
        proptest::option::of(prop_oneof![
            s.prop_map(AttributeChange::Set),
            Just(AttributeChange::Unset)
        ])
    }

    fn arb_update() -> impl Strategy<Value = AttributeUpdate> {
        let num = || arb_change(proptest::num::f64::NORMAL | proptest::num::f64::ZERO);
        (
            (
                arb_change(any::<u32>()),
                arb_change(any::<u32>()),
                num(),
                num(),
                num(),
            ),
            (
                arb_change(any::<u32>()),
                arb_change(any::<u32>()),
                arb_change(any::<bool>()),
                arb_change(any::<bool>()),
                arb_change(any::<u32>()),
            ),
        )
            .prop_map(
                |((pmin, pmax, gt, lt, st), (epmin, epmax, edge, con, hqmax))| AttributeUpdate {
                    pmin,
                    pmax,
                    gt,
                    lt,
                    st,
                    epmin,
                    epmax,
                    edge,
                    con,
                    hqmax,
                },
            )
    }

    proptest! {
        #[test]
        fn attributes_query_round_trip(a in arb_attributes()) {
            let query = a.to_query();
            let back = Attributes::from_query(query.iter().map(String::as_str)).unwrap();
            prop_assert_eq!(&back, &a);
            // Deterministic: writing again gives the same strings.
            prop_assert_eq!(back.to_query(), query);
        }

        #[test]
        fn update_query_round_trip(u in arb_update()) {
            let query = u.to_query();
            let back = AttributeUpdate::from_query(query.iter().map(String::as_str)).unwrap();
            prop_assert_eq!(&back, &u);
        }

        #[test]
        fn query_parse_never_panics(items in proptest::collection::vec(".{0,20}", 0..6)) {
            let _ = Attributes::from_query(items.iter().map(String::as_str));
            let _ = AttributeUpdate::from_query(items.iter().map(String::as_str));
        }

        #[test]
        fn inherit_matches_per_field_override(a in arb_attributes(), b in arb_attributes()) {
            let m = Attributes::inherit(&[&a, &b]);
            prop_assert_eq!(m.pmin, b.pmin.or(a.pmin));
            prop_assert_eq!(m.gt, b.gt.or(a.gt));
            prop_assert_eq!(m.hqmax, b.hqmax.or(a.hqmax));
            prop_assert_eq!(m.dim, b.dim);
            prop_assert_eq!(m.ver, b.ver);
        }

        #[test]
        fn validate_accepts_what_the_rules_allow(pmin in any::<u32>(), pmax in any::<u32>(),
                                                 lt in -1e6f64..1e6, gap in 0.0f64..1e6, st in 0.0f64..1e6) {
            let a = Attributes { pmin: Some(pmin), pmax: Some(pmax), lt: Some(lt), gt: Some(lt + gap), st: Some(st), ..Attributes::new() };
            let expect_ok = (pmax == 0 || pmin <= pmax) && lt < lt + gap && lt + 2.0 * st < lt + gap;
            prop_assert_eq!(a.validate().is_ok(), expect_ok);
        }
    }

    #[test]
    fn map_of_levels_inherits_in_order() {
        // Shows how a client stores per-level attributes and computes the effective set.
        let mut store: BTreeMap<Path, Attributes> = BTreeMap::new();
        store.insert(Path::Object(3), q(&["pmin=10"]).unwrap());
        store.insert(Path::Resource(3, 0, 9), q(&["pmin=1", "pmax=5"]).unwrap());
        let target = Path::Resource(3, 0, 9);
        let levels: Vec<&Attributes> = [Path::Object(3), Path::Instance(3, 0), target]
            .iter()
            .filter_map(|p| store.get(p))
            .collect();
        let eff = Attributes::inherit(&levels);
        assert_eq!((eff.pmin, eff.pmax), (Some(1), Some(5)));
    }
}
