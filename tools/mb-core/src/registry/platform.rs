//! Choosing the manifest of an image index (or Docker manifest list) that matches a platform.

use crate::graph::Platform;
use crate::image::Descriptor;
use crate::store::Index;

use super::error::RegistryError;

/// Parses `os/architecture[/variant]`.
pub fn parse_platform(text: &str) -> Result<Platform, RegistryError> {
    let parts: Vec<&str> = text.split('/').collect();
    let bad = || RegistryError::BadPlatform(text.to_string());
    if parts.iter().any(|part| part.is_empty()) {
        return Err(bad());
    }
    match parts.as_slice() {
        [os, architecture] => Ok(Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }),
        [os, architecture, variant] => Ok(Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: Some(variant.to_string()),
        }),
        _ => Err(bad()),
    }
}

fn platform_field<'a>(platform: &'a serde_json::Value, field: &str) -> Option<&'a str> {
    platform.get(field).and_then(serde_json::Value::as_str)
}

/// Whether an index entry's platform is `wanted`; a wanted platform without a variant accepts
/// any variant.
pub fn platform_matches(platform: Option<&serde_json::Value>, wanted: &Platform) -> bool {
    let Some(platform) = platform else {
        return false;
    };
    platform_field(platform, "os") == Some(wanted.os.as_str())
        && platform_field(platform, "architecture") == Some(wanted.architecture.as_str())
        && wanted
            .variant
            .as_deref()
            .is_none_or(|variant| platform_field(platform, "variant") == Some(variant))
}

/// `os/arch[/variant]` of an index entry, for messages.
pub fn describe_platform(platform: Option<&serde_json::Value>) -> String {
    let Some(platform) = platform else {
        return "no platform".to_string();
    };
    [
        platform_field(platform, "os"),
        platform_field(platform, "architecture"),
        platform_field(platform, "variant"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("/")
}

/// The entry of `index` for `wanted`, or the list of platforms it does have.
pub fn choose_manifest<'a>(index: &'a Index, wanted: &Platform) -> Result<&'a Descriptor, String> {
    index
        .manifests
        .iter()
        .find(|descriptor| platform_matches(descriptor.platform.as_ref(), wanted))
        .ok_or_else(|| {
            index
                .manifests
                .iter()
                .map(|descriptor| describe_platform(descriptor.platform.as_ref()))
                .collect::<Vec<_>>()
                .join(", ")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_matching_needs_os_and_architecture() {
        let host = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let amd64 = serde_json::json!({"os": "linux", "architecture": "amd64"});
        let arm64 = serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
        assert!(platform_matches(Some(&amd64), &host));
        assert!(!platform_matches(Some(&arm64), &host));
        assert!(!platform_matches(None, &host));
        let arm_v7 = Platform {
            os: "linux".into(),
            architecture: "arm".into(),
            variant: Some("v7".into()),
        };
        let arm_v6 = serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v6"});
        assert!(!platform_matches(Some(&arm_v6), &arm_v7));
        assert_eq!(describe_platform(Some(&arm64)), "linux/arm64/v8");
    }

    #[test]
    fn platforms_parse_with_an_optional_variant() -> Result<(), RegistryError> {
        assert_eq!(
            parse_platform("linux/arm64/v8")?.variant.as_deref(),
            Some("v8")
        );
        assert_eq!(parse_platform("linux/amd64")?.architecture, "amd64");
        for bad in ["linux", "linux//v8", "a/b/c/d", ""] {
            assert!(parse_platform(bad).is_err(), "{bad:?}");
        }
        Ok(())
    }
}
