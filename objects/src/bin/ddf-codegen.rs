//! Generates `objects/src/generated.rs` from a folder of OMA DDF XML files.
//!
//! ```text
//! cargo run -p lwm2m-objects --bin ddf-codegen -- <ddf-folder> [<output.rs>] [--check]
//! ```
//!
//! Reads every `*.xml` file of `<ddf-folder>` with the crate's DDF parser
//! (the same one `Registry::load_ddf_dir` uses), refuses two files defining
//! the same object id and version, and writes the generated Rust to
//! `<output.rs>` (default: this crate's `src/generated.rs`). With `--check`
//! it writes nothing and fails if the file differs from what it would write.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use lwm2m_objects::{codegen, ddf};

fn main() -> ExitCode {
    match run() {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("ddf-codegen: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<String, String> {
    let mut check = false;
    let mut positional = Vec::new();
    for arg in std::env::args_os().skip(1) {
        if arg == "--check" {
            check = true;
        } else {
            positional.push(PathBuf::from(arg));
        }
    }
    let mut positional = positional.into_iter();
    let dir = positional
        .next()
        .ok_or("usage: ddf-codegen <ddf-folder> [<output.rs>] [--check]")?;
    let output = positional.next().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join("generated.rs")
    });
    if positional.next().is_some() {
        return Err("too many arguments".into());
    }

    let files = ddf::read_dir(&dir).map_err(|e| e.to_string())?;
    if files.is_empty() {
        return Err(format!("no *.xml file in {}", dir.display()));
    }
    // (id, version) -> file, to name both files of a duplicate.
    let mut seen: BTreeMap<(u16, String), PathBuf> = BTreeMap::new();
    let mut models = Vec::new();
    for (path, file_models) in files {
        for model in file_models {
            let key = (model.id, model.version.clone());
            if let Some(first) = seen.get(&key) {
                return Err(format!(
                    "object {} version {} is defined in both {} and {}",
                    key.0,
                    key.1,
                    first.display(),
                    path.display()
                ));
            }
            seen.insert(key, path.clone());
            models.push(model);
        }
    }
    let text = codegen::generate(&models).map_err(|e| e.to_string())?;

    if check {
        let current =
            std::fs::read_to_string(&output).map_err(|e| format!("{}: {e}", output.display()))?;
        if current != text {
            return Err(format!(
                "{} is out of date; run without --check",
                output.display()
            ));
        }
        return Ok(format!("{} is up to date", output.display()));
    }
    std::fs::write(&output, &text).map_err(|e| format!("{}: {e}", output.display()))?;
    Ok(format!(
        "wrote {} ({} object models)",
        output.display(),
        models.len()
    ))
}
