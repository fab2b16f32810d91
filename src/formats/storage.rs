//! Where table metadata is read from: a `Storage` reads a whole object and
//! lists a folder. The readers ask for nothing else, so an object store
//! (gs://, s3://, through the `object_store` crate) fits behind the same
//! trait: `read` is a GET, `list` a delimited LIST with `start-after`, and
//! a 404 is `StorageError::NotFound`.

use std::path::PathBuf;

/// An object under a listed folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The name under the folder (no slash): `00000000000000000010.json`.
    pub name: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No object there: for a table's own metadata, the table is absent.
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Other(String),
}

pub trait Storage: Sync {
    /// The whole object at `location` (a path or a URL the storage knows).
    fn read(&self, location: &str) -> Result<Vec<u8>, StorageError>;

    /// The objects directly in the folder `folder`, sorted by name, only
    /// those whose name sorts after `after` when given (object stores list
    /// from an offset, so a long Delta log is not listed from its start). A
    /// folder that does not exist lists as empty, as in an object store.
    fn list(&self, folder: &str, after: Option<&str>) -> Result<Vec<Listed>, StorageError>;
}

/// `location/name`, with one slash between.
pub fn join(location: &str, name: &str) -> String {
    format!("{}/{}", location.trim_end_matches('/'), name)
}

/// The local filesystem: plain paths and `file:` URLs (`file:///a/b`, or
/// `file:/a/b` as Hadoop writes them). Other schemes are an error.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalStorage;

impl LocalStorage {
    fn path(location: &str) -> Result<PathBuf, StorageError> {
        if let Some(rest) = location.strip_prefix("file:") {
            // `file:///a`, `file://localhost/a` and `file:/a` name `/a`.
            let rest = match rest.strip_prefix("//") {
                Some(authority_and_path) => {
                    let slash = authority_and_path
                        .find('/')
                        .unwrap_or(authority_and_path.len());
                    let authority = &authority_and_path[..slash];
                    if !authority.is_empty() && authority != "localhost" {
                        return Err(StorageError::Other(format!(
                            "{location}: a file URL on another host ({authority}) is not local"
                        )));
                    }
                    &authority_and_path[slash..]
                }
                None => rest,
            };
            return Ok(PathBuf::from(rest));
        }
        match location.split_once("://") {
            Some((scheme, _)) if !scheme.contains('/') => Err(StorageError::Other(format!(
                "{location}: {scheme}:// is not supported (only local paths and file: URLs)"
            ))),
            _ => Ok(PathBuf::from(location)),
        }
    }
}

fn io_error(e: std::io::Error) -> StorageError {
    match e.kind() {
        std::io::ErrorKind::NotFound => StorageError::NotFound,
        _ => StorageError::Other(e.to_string()),
    }
}

impl Storage for LocalStorage {
    fn read(&self, location: &str) -> Result<Vec<u8>, StorageError> {
        std::fs::read(LocalStorage::path(location)?).map_err(io_error)
    }

    fn list(&self, folder: &str, after: Option<&str>) -> Result<Vec<Listed>, StorageError> {
        let entries = match std::fs::read_dir(LocalStorage::path(folder)?) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if after.is_some_and(|after| name.as_str() <= after) {
                continue;
            }
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                // Gone since the listing: as if listed a moment later.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(e)),
            };
            if metadata.is_file() {
                out.push(Listed {
                    name,
                    size: metadata.len(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_and_paths_name_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        std::fs::write(&path, "{}").unwrap();
        let shown = path.display().to_string();
        for location in [
            shown.clone(),
            format!("file://{shown}"),
            format!("file:{shown}"),
            format!("file://localhost{shown}"),
        ] {
            assert_eq!(LocalStorage.read(&location).unwrap(), b"{}", "{location}");
        }
        assert!(matches!(
            LocalStorage.read(&format!("{shown}.missing")),
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            LocalStorage.read("s3://bucket/a.json"),
            Err(StorageError::Other(_))
        ));
        assert!(matches!(
            LocalStorage.read(&format!("file://elsewhere{shown}")),
            Err(StorageError::Other(_))
        ));
    }

    #[test]
    fn listing_is_sorted_starts_after_an_offset_and_finds_nothing_in_no_folder() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b", "a", "c"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        std::fs::create_dir(dir.path().join("folder")).unwrap();
        let folder = dir.path().display().to_string();
        let names = |after| -> Vec<String> {
            LocalStorage
                .list(&folder, after)
                .unwrap()
                .into_iter()
                .map(|l| l.name)
                .collect()
        };
        assert_eq!(names(None), ["a", "b", "c"]);
        assert_eq!(names(Some("a")), ["b", "c"]);
        assert!(
            LocalStorage
                .list(&join(&folder, "missing"), None)
                .unwrap()
                .is_empty()
        );
    }
}
