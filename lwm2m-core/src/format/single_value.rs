//! What the one-value formats (text/plain, application/octet-stream,
//! application/cbor) share: the request path must name one resource or
//! resource instance, and the node at it must carry exactly one value.

use super::FormatError;
use crate::model::{Node, Path, Resource, ResourceValue, Value};

/// The object and resource ids of `path`, which must be `/O/I/R` or
/// `/O/I/R/RI`; any other depth is [`FormatError::NotRepresentable`] with
/// the format's message `not_a_value`.
pub(crate) fn value_path(
    path: &Path,
    not_a_value: &'static str,
) -> Result<(u16, u16), FormatError> {
    match *path {
        Path::Resource(o, _, r) | Path::ResourceInstance(o, _, r, _) => Ok((o, r)),
        _ => Err(FormatError::NotRepresentable(not_a_value)),
    }
}

/// The node a decoded `value` makes at `path`: a resource instance at
/// `/O/I/R/RI`, else the single resource `rid`.
pub(crate) fn value_node(path: &Path, rid: u16, value: Value) -> Node {
    match *path {
        Path::ResourceInstance(_, _, _, riid) => Node::ResourceInstance { id: riid, value },
        _ => Node::Resource(Resource::single(rid, value)),
    }
}

/// The one value `node` carries at `path`: a single resource at `/O/I/R` or
/// a resource instance at `/O/I/R/RI`. Ids that do not match the path are
/// [`FormatError::InvalidPath`]; a multiple resource (message `multiple`) or
/// a node at another depth (message `not_a_value`) is
/// [`FormatError::NotRepresentable`].
pub(crate) fn single_value<'n>(
    node: &'n Node,
    path: &Path,
    not_a_value: &'static str,
    multiple: &'static str,
) -> Result<&'n Value, FormatError> {
    match (node, *path) {
        (Node::Resource(res), Path::Resource(_, _, r)) => {
            if res.id != r {
                return Err(FormatError::InvalidPath);
            }
            match &res.value {
                ResourceValue::Single(v) => Ok(v),
                ResourceValue::Multiple(_) => Err(FormatError::NotRepresentable(multiple)),
            }
        }
        (Node::ResourceInstance { id, value }, Path::ResourceInstance(_, _, _, ri)) => {
            if *id != ri {
                return Err(FormatError::InvalidPath);
            }
            Ok(value)
        }
        _ => Err(FormatError::NotRepresentable(not_a_value)),
    }
}
