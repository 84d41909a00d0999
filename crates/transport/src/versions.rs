//! What a node speaks, told in a cluster call's or an answer's gRPC metadata (release and
//! protocols, `tepui_common::version`). 0.1.0 told nothing, so silence reads as 0.1.0.

use tepui_common::version::{self, Speaks};
use tonic::metadata::{MetadataMap, MetadataValue};

/// Puts what `speaks` into `md`.
pub fn tell_versions(md: &mut MetadataMap, speaks: &Speaks) {
    if let Ok(v) = MetadataValue::try_from(speaks.release.as_str()) {
        md.insert(version::META_RELEASE, v);
    }
    md.insert(version::META_PROTOCOL, MetadataValue::from(speaks.protocol));
    md.insert(version::META_MIN_PROTOCOL, MetadataValue::from(speaks.min_protocol));
}

/// What `md` says the other side speaks.
pub fn told_versions(md: &MetadataMap) -> Speaks {
    let text = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let number = |k: &str| text(k).and_then(|v| v.parse::<u32>().ok());
    Speaks::told(
        text(version::META_RELEASE).as_deref(),
        number(version::META_PROTOCOL),
        number(version::META_MIN_PROTOCOL),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_silence_is_legacy() {
        let mut md = MetadataMap::new();
        assert_eq!(told_versions(&md), Speaks::legacy());
        tell_versions(&mut md, &Speaks::this());
        assert_eq!(told_versions(&md), Speaks::this());
    }
}
