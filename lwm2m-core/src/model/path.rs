use alloc::string::String;
use core::cmp::Ordering;
use core::fmt;
use core::str::FromStr;

/// Largest usable id: 65535 is reserved by the LwM2M TS (e.g. "no instance"
/// in an object link).
pub const MAX_ID: u16 = 65534;

/// An LwM2M path. The depth is part of the value, so an instance path can never
/// be mistaken for a resource path.
///
/// Ordering is lexicographic on the ids with a prefix first, so `/3` < `/3/0`
/// < `/3/0/1` < `/4`, which is the order the content formats encode in.
///
/// ```
/// use lwm2m_core::model::Path;
/// let p: Path = "/3/0/9".parse().unwrap();
/// assert_eq!(p, Path::Resource(3, 0, 9));
/// assert_eq!(p.to_string(), "/3/0/9");
/// assert!(Path::Object(3) < Path::Instance(3, 0));
/// assert!("/3/65535".parse::<Path>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    /// `/`
    Root,
    /// `/O`
    Object(u16),
    /// `/O/I`
    Instance(u16, u16),
    /// `/O/I/R`
    Resource(u16, u16, u16),
    /// `/O/I/R/RI`
    ResourceInstance(u16, u16, u16, u16),
}

/// Why a path could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The text does not start with `/`.
    MissingLeadingSlash,
    /// A segment is empty, not a decimal number, or has a leading `+`/`-`.
    InvalidSegment,
    /// An id is above 65534 (65535 is reserved).
    IdOutOfRange,
    /// More than four segments.
    TooDeep,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::MissingLeadingSlash => "path must start with '/'",
            PathError::InvalidSegment => "path segment must be a decimal id without sign",
            PathError::IdOutOfRange => "path id must be at most 65534 (65535 is reserved)",
            PathError::TooDeep => "path has more than 4 segments (expected /O/I/R/RI at most)",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PathError {}

impl Path {
    /// Builds a path from up to four ids.
    pub fn from_ids(ids: &[u16]) -> Result<Path, PathError> {
        if ids.iter().any(|&i| i > MAX_ID) {
            return Err(PathError::IdOutOfRange);
        }
        Ok(match *ids {
            [] => Path::Root,
            [o] => Path::Object(o),
            [o, i] => Path::Instance(o, i),
            [o, i, r] => Path::Resource(o, i, r),
            [o, i, r, ri] => Path::ResourceInstance(o, i, r, ri),
            _ => return Err(PathError::TooDeep),
        })
    }

    /// Parses CoAP Uri-Path segments (`["3", "0", "9"]`).
    pub fn from_segments<'a, I>(segments: I) -> Result<Path, PathError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut ids = [0u16; 4];
        let mut n = 0;
        for seg in segments {
            if n == 4 {
                return Err(PathError::TooDeep);
            }
            ids[n] = parse_id(seg)?;
            n += 1;
        }
        Path::from_ids(&ids[..n])
    }

    /// Number of ids: 0 for `/`, 4 for a resource-instance path.
    pub fn depth(&self) -> usize {
        self.id_array().1
    }

    /// The ids as a slice-able array plus their count.
    fn id_array(&self) -> ([u16; 4], usize) {
        match *self {
            Path::Root => ([0; 4], 0),
            Path::Object(o) => ([o, 0, 0, 0], 1),
            Path::Instance(o, i) => ([o, i, 0, 0], 2),
            Path::Resource(o, i, r) => ([o, i, r, 0], 3),
            Path::ResourceInstance(o, i, r, ri) => ([o, i, r, ri], 4),
        }
    }

    /// Calls `f` with the ids of this path.
    pub fn with_ids<T>(&self, f: impl FnOnce(&[u16]) -> T) -> T {
        let (ids, n) = self.id_array();
        f(&ids[..n])
    }

    /// Object id, if the path has one.
    pub fn object_id(&self) -> Option<u16> {
        self.id_at(0)
    }
    /// Object instance id, if the path has one.
    pub fn instance_id(&self) -> Option<u16> {
        self.id_at(1)
    }
    /// Resource id, if the path has one.
    pub fn resource_id(&self) -> Option<u16> {
        self.id_at(2)
    }
    /// Resource instance id, if the path has one.
    pub fn resource_instance_id(&self) -> Option<u16> {
        self.id_at(3)
    }

    fn id_at(&self, idx: usize) -> Option<u16> {
        let (ids, n) = self.id_array();
        (idx < n).then(|| ids[idx])
    }

    /// The path one level up (`/` stays `/`).
    pub fn parent(&self) -> Path {
        match *self {
            Path::Root | Path::Object(_) => Path::Root,
            Path::Instance(o, _) => Path::Object(o),
            Path::Resource(o, i, _) => Path::Instance(o, i),
            Path::ResourceInstance(o, i, r, _) => Path::Resource(o, i, r),
        }
    }

    /// The path one level down, or `None` at resource-instance depth or for a reserved id.
    pub fn child(&self, id: u16) -> Option<Path> {
        if id > MAX_ID {
            return None;
        }
        Some(match *self {
            Path::Root => Path::Object(id),
            Path::Object(o) => Path::Instance(o, id),
            Path::Instance(o, i) => Path::Resource(o, i, id),
            Path::Resource(o, i, r) => Path::ResourceInstance(o, i, r, id),
            Path::ResourceInstance(..) => return None,
        })
    }

    /// True if `self` equals `other` or is an ancestor of it (`/3` starts `/3/0/1`).
    pub fn is_prefix_of(&self, other: &Path) -> bool {
        let (a, an) = self.id_array();
        let (b, bn) = other.id_array();
        an <= bn && a[..an] == b[..an]
    }

    /// Formats the path into a new string (same as `to_string`, available without `std`).
    pub fn to_path_string(&self) -> String {
        use core::fmt::Write;
        let mut s = String::new();
        let _ = write!(s, "{self}");
        s
    }
}

fn parse_id(seg: &str) -> Result<u16, PathError> {
    if seg.is_empty() || seg.len() > 5 || !seg.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PathError::InvalidSegment);
    }
    let v: u32 = seg.parse().map_err(|_| PathError::InvalidSegment)?;
    if v > u32::from(MAX_ID) {
        return Err(PathError::IdOutOfRange);
    }
    Ok(v as u16)
}

impl FromStr for Path {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Path, PathError> {
        let rest = s.strip_prefix('/').ok_or(PathError::MissingLeadingSlash)?;
        if rest.is_empty() {
            return Ok(Path::Root);
        }
        Path::from_segments(rest.split('/'))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ids, n) = self.id_array();
        if n == 0 {
            return f.write_str("/");
        }
        for id in &ids[..n] {
            write!(f, "/{id}")?;
        }
        Ok(())
    }
}

impl Ord for Path {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, an) = self.id_array();
        let (b, bn) = other.id_array();
        a[..an].cmp(&b[..bn])
    }
}

impl PartialOrd for Path {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn parse_and_format_every_depth() {
        for s in [
            "/",
            "/3",
            "/3/0",
            "/3/0/9",
            "/3/0/7/1",
            "/65534/65534/65534/65534",
        ] {
            let p: Path = s.parse().unwrap();
            assert_eq!(p.to_path_string(), s);
        }
        assert_eq!("/3/0/7/1".parse::<Path>().unwrap().depth(), 4);
    }

    #[test]
    fn rejects_bad_paths() {
        assert_eq!("3/0".parse::<Path>(), Err(PathError::MissingLeadingSlash));
        assert_eq!("/3/".parse::<Path>(), Err(PathError::InvalidSegment));
        assert_eq!("//".parse::<Path>(), Err(PathError::InvalidSegment));
        assert_eq!("/+3".parse::<Path>(), Err(PathError::InvalidSegment));
        assert_eq!("/-1".parse::<Path>(), Err(PathError::InvalidSegment));
        assert_eq!("/3/x".parse::<Path>(), Err(PathError::InvalidSegment));
        assert_eq!("/65535".parse::<Path>(), Err(PathError::IdOutOfRange));
        assert_eq!("/99999".parse::<Path>(), Err(PathError::IdOutOfRange));
        assert_eq!("/123456".parse::<Path>(), Err(PathError::InvalidSegment));
        assert_eq!("/1/2/3/4/5".parse::<Path>(), Err(PathError::TooDeep));
    }

    #[test]
    fn ordering_puts_prefix_first() {
        let mut v: Vec<Path> = ["/4", "/3/0/1", "/3", "/3/0", "/10", "/3/1", "/"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort();
        let s: Vec<String> = v.iter().map(|p| p.to_path_string()).collect();
        assert_eq!(s, ["/", "/3", "/3/0", "/3/0/1", "/3/1", "/4", "/10"]);
    }

    #[test]
    fn navigation() {
        let p = Path::Resource(3, 0, 9);
        assert_eq!(p.parent(), Path::Instance(3, 0));
        assert_eq!(p.child(2), Some(Path::ResourceInstance(3, 0, 9, 2)));
        assert_eq!(Path::ResourceInstance(1, 2, 3, 4).child(0), None);
        assert!(Path::Object(3).is_prefix_of(&p));
        assert!(!Path::Object(4).is_prefix_of(&p));
        assert!(!p.is_prefix_of(&Path::Object(3)));
        assert_eq!(p.resource_id(), Some(9));
        assert_eq!(p.resource_instance_id(), None);
    }
}
