//! A set of object models keyed by (object id, object version).

use alloc::collections::BTreeMap;
use alloc::string::String;
use core::cmp::Ordering;

use lwm2m_core::model::{ModelLookup, ObjectModel};

/// Compares two object versions (`"1.0"`, `"1.10"`, `"2.0"`): dot-separated
/// parts compare as numbers where both are numbers (so `1.10 > 1.9`), as text
/// otherwise; ties are broken on the whole text so that only equal strings
/// compare equal (a total order consistent with `==`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut pa = a.split('.');
    let mut pb = b.split('.');
    loop {
        match (pa.next(), pb.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(nx), Ok(ny)) => nx.cmp(&ny),
                    _ => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

/// A version string ordered by [`compare_versions`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct VersionKey(String);

impl Ord for VersionKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_versions(&self.0, &other.0)
    }
}

impl PartialOrd for VersionKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, Default)]
struct Entry {
    versions: BTreeMap<VersionKey, ObjectModel>,
    /// Version chosen with [`Registry::set_default`]; the latest one otherwise.
    pinned: Option<VersionKey>,
}

impl Entry {
    fn default_model(&self) -> Option<&ObjectModel> {
        if let Some(pin) = &self.pinned {
            if let Some(model) = self.versions.get(pin) {
                return Some(model);
            }
        }
        self.versions.values().next_back()
    }
}

/// Object models keyed by (id, version), with one default version per id.
///
/// The default version of an object is the latest one (by [`compare_versions`])
/// unless [`Registry::set_default`] chose another. [`ModelLookup::object`]
/// answers with the default version; [`Registry::object_version`] with an
/// exact one (e.g. the version a client announced at registration).
///
/// ```
/// use lwm2m_objects::{device, Registry};
/// use lwm2m_core::model::ResourceType;
///
/// let registry = Registry::standard();
/// let device = registry.object(device::ID).unwrap();
/// let manufacturer = device.resource(device::MANUFACTURER).unwrap();
/// assert_eq!(manufacturer.name, "Manufacturer");
/// assert_eq!(manufacturer.resource_type, ResourceType::String);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Registry {
    objects: BTreeMap<u16, Entry>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with every generated OMA model (all versions; the latest
    /// version of each object is its default).
    pub fn standard() -> Self {
        let mut registry = Self::new();
        for object in crate::generated::OBJECTS {
            registry.insert(object.to_model());
        }
        registry
    }

    /// Adds `model`, replacing (and returning) a model with the same id and
    /// version. Custom objects and vendor versions go in the same way.
    pub fn insert(&mut self, model: ObjectModel) -> Option<ObjectModel> {
        let entry = self.objects.entry(model.id).or_default();
        entry
            .versions
            .insert(VersionKey(model.version.clone()), model)
    }

    /// Removes the model of object `id` at `version`.
    pub fn remove(&mut self, id: u16, version: &str) -> Option<ObjectModel> {
        let entry = self.objects.get_mut(&id)?;
        let removed = entry.versions.remove(&VersionKey(String::from(version)));
        if entry.versions.is_empty() {
            self.objects.remove(&id);
        }
        removed
    }

    /// The default model of object `id` (see [`Registry::set_default`]).
    pub fn object(&self, id: u16) -> Option<&ObjectModel> {
        self.objects.get(&id).and_then(Entry::default_model)
    }

    /// The model of object `id` at exactly `version` (e.g. `"1.1"`).
    pub fn object_version(&self, id: u16, version: &str) -> Option<&ObjectModel> {
        self.objects
            .get(&id)?
            .versions
            .get(&VersionKey(String::from(version)))
    }

    /// Makes `version` the default of object `id`. Returns false (and changes
    /// nothing) if that version is not in the registry.
    pub fn set_default(&mut self, id: u16, version: &str) -> bool {
        let Some(entry) = self.objects.get_mut(&id) else {
            return false;
        };
        let key = VersionKey(String::from(version));
        if !entry.versions.contains_key(&key) {
            return false;
        }
        entry.pinned = Some(key);
        true
    }

    /// The versions known for object `id`, oldest first.
    pub fn versions(&self, id: u16) -> impl Iterator<Item = &str> + '_ {
        self.objects
            .get(&id)
            .into_iter()
            .flat_map(|e| e.versions.keys().map(|k| k.0.as_str()))
    }

    /// The object ids in the registry, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.objects.keys().copied()
    }

    /// Every model, by id then version (oldest first).
    pub fn iter(&self) -> impl Iterator<Item = &ObjectModel> + '_ {
        self.objects.values().flat_map(|e| e.versions.values())
    }

    /// The default model of every object, by id.
    pub fn defaults(&self) -> impl Iterator<Item = &ObjectModel> + '_ {
        self.objects.values().filter_map(Entry::default_model)
    }

    /// Number of models (all versions).
    pub fn len(&self) -> usize {
        self.objects.values().map(|e| e.versions.len()).sum()
    }

    /// True if there is no model.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Parses DDF XML text and adds every object in it; returns how many.
    /// Nothing is added when the text has an error.
    #[cfg(feature = "ddf")]
    pub fn load_ddf_str(&mut self, xml: &str) -> Result<usize, crate::ddf::DdfError> {
        let models = crate::ddf::parse(xml)?;
        let n = models.len();
        for model in models {
            self.insert(model);
        }
        Ok(n)
    }

    /// Adds every object of every `*.xml` file in folder `dir` (not its
    /// sub-folders), in file-name order, like Leshan's model folder. Returns
    /// how many objects were added. Stops at the first unreadable or invalid
    /// file; objects from the files before it stay added.
    #[cfg(all(feature = "ddf", feature = "std"))]
    pub fn load_ddf_dir(
        &mut self,
        dir: impl AsRef<std::path::Path>,
    ) -> Result<usize, crate::ddf::LoadError> {
        let mut total = 0;
        for (_path, models) in crate::ddf::read_dir(dir.as_ref())? {
            total += models.len();
            for model in models {
                self.insert(model);
            }
        }
        Ok(total)
    }
}

impl ModelLookup for Registry {
    fn object(&self, id: u16) -> Option<&ObjectModel> {
        Registry::object(self, id)
    }
}

impl<'a> IntoIterator for &'a Registry {
    type Item = &'a ObjectModel;
    type IntoIter = alloc::boxed::Box<dyn Iterator<Item = &'a ObjectModel> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        alloc::boxed::Box::new(self.iter())
    }
}

impl Extend<ObjectModel> for Registry {
    fn extend<T: IntoIterator<Item = ObjectModel>>(&mut self, iter: T) {
        for model in iter {
            self.insert(model);
        }
    }
}

impl FromIterator<ObjectModel> for Registry {
    fn from_iter<T: IntoIterator<Item = ObjectModel>>(iter: T) -> Self {
        let mut registry = Registry::new();
        registry.extend(iter);
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically_per_part() {
        assert_eq!(compare_versions("1.10", "1.9"), Ordering::Greater);
        assert_eq!(compare_versions("1.0", "1.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.0", "1.0.1"), Ordering::Less);
        assert_eq!(compare_versions("2.0", "10.0"), Ordering::Less);
        // Numerically equal but different text: still ordered, never Equal.
        assert_ne!(compare_versions("01.0", "1.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.a", "1.b"), Ordering::Less);
    }
}
