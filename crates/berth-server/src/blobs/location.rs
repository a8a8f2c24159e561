//! Where blobs live, chosen from `--blobs URL` in this one place: a local folder (the default,
//! `<data>/blobs`) or an object store (`s3://`, `az://`, `gs://`) through `object_store`.
//!
//! Object-store URLs are `scheme://bucket/prefix?option=value&...`. Endpoint, region and
//! credentials come from the provider's usual variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, ..., `AZURE_STORAGE_*`, `GOOGLE_*`); query options are `object_store`
//! configuration keys (`endpoint`, `region`, `allow_http`, ...) plus `path_style=true` for
//! S3-compatible servers that do not take virtual-hosted requests.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

/// The accepted forms, for error messages.
pub const ACCEPTED_FORMS: &str = "a folder (`/srv/berth/blobs` or `file:///srv/berth/blobs`), \
     `s3://bucket/prefix`, `az://container/prefix` or `gs://bucket/prefix` \
     (optionally with `?option=value` object_store settings, e.g. `?path_style=true`)";

/// Which object store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Amazon S3 or an S3-compatible server.
    S3,
    /// Azure Blob Storage.
    Azure,
    /// Google Cloud Storage.
    Gcs,
}

/// A parsed `--blobs` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    /// A local folder holding `sha256/<2>/<64>`.
    Local(PathBuf),
    /// An object store.
    Remote(RemoteLocation),
}

/// An object-store location.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteLocation {
    /// Which provider.
    pub provider: Provider,
    /// Bucket or container.
    pub bucket: String,
    /// Key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// `?key=value` options, in order.
    pub options: Vec<(String, String)>,
}

/// A `--blobs` value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("`{flag}` is `{value}`: {reason}; accepted forms: {ACCEPTED_FORMS}")]
pub struct LocationError {
    /// The flag that gave it (`--blobs`, `--blobs-to`, ...).
    pub flag: &'static str,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl BlobLocation {
    /// Parses `value`; `None` is the default, `<data>/blobs`. Object-store locations are also
    /// built (no network) so that a bad option or missing setting fails here.
    pub fn parse(value: Option<&str>, data_dir: &std::path::Path) -> Result<Self, LocationError> {
        match value {
            None => Ok(Self::Local(data_dir.join("blobs"))),
            Some(value) => Self::parse_flag("--blobs", value),
        }
    }

    /// Parses the value of `flag` (named in the error when it cannot be used).
    pub fn parse_flag(flag: &'static str, value: &str) -> Result<Self, LocationError> {
        let fail = |reason: String| LocationError {
            flag,
            value: redacted(value),
            reason,
        };
        if value.trim().is_empty() {
            return Err(fail("it is empty".into()));
        }
        let Some((scheme, rest)) = value.split_once("://") else {
            return Ok(Self::Local(PathBuf::from(value)));
        };
        let provider = match scheme {
            "file" if rest.starts_with('/') => return Ok(Self::Local(PathBuf::from(rest))),
            "file" => return Err(fail("a `file://` URL needs an absolute path".into())),
            "s3" => Provider::S3,
            "az" | "azure" => Provider::Azure,
            "gs" => Provider::Gcs,
            other => return Err(fail(format!("the scheme `{other}` is not supported"))),
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(fail("the bucket (or container) name is missing".into()));
        }
        let options = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let remote = RemoteLocation {
            provider,
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            options,
        };
        remote.build().map_err(|e| fail(e.to_string()))?;
        Ok(Self::Remote(remote))
    }
}

impl std::fmt::Debug for RemoteLocation {
    /// The URL with secret-looking option values replaced by `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let query: Vec<String> = self
            .options
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        write!(
            f,
            "{}",
            redacted(&format!("{}?{}", self.display(), query.join("&")))
        )
    }
}

/// `value` with the values of secret-looking `?options` replaced by `***`.
fn redacted(value: &str) -> String {
    let Some((base, query)) = value.split_once('?') else {
        return value.to_owned();
    };
    let options: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _))
                if ["secret", "key", "token", "password", "sas"]
                    .iter()
                    .any(|word| key.to_ascii_lowercase().contains(word)) =>
            {
                format!("{key}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", options.join("&"))
}

impl RemoteLocation {
    /// `scheme://bucket`.
    pub fn bucket_url(&self) -> String {
        let scheme = match self.provider {
            Provider::S3 => "s3",
            Provider::Azure => "az",
            Provider::Gcs => "gs",
        };
        format!("{scheme}://{}", self.bucket)
    }

    /// The URL without its options (no secrets), for logs and messages.
    pub fn display(&self) -> String {
        if self.prefix.is_empty() {
            self.bucket_url()
        } else {
            format!("{}/{}", self.bucket_url(), self.prefix)
        }
    }

    /// The key prefix as an object path.
    pub fn prefix_path(&self) -> ObjectPath {
        ObjectPath::from(self.prefix.as_str())
    }

    /// Builds the client from the provider's environment variables and the URL's options.
    pub fn build(&self) -> Result<Arc<dyn ObjectStore>, String> {
        let unknown = |key: &str| format!("`{key}` is not an option of this object store");
        let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match self.provider {
            Provider::S3 => {
                use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(&self.bucket);
                // `AWS_ENDPOINT_URL_S3` wins over `AWS_ENDPOINT_URL`, as in the AWS tools.
                if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL_S3")
                    && !endpoint.is_empty()
                {
                    builder = builder.with_endpoint(endpoint);
                }
                for (key, value) in &self.options {
                    builder = match key.as_str() {
                        "path_style" => builder.with_virtual_hosted_style_request(!matches!(
                            value.as_str(),
                            "true" | "1"
                        )),
                        _ => builder.with_config(
                            key.parse::<AmazonS3ConfigKey>().map_err(|_| unknown(key))?,
                            value,
                        ),
                    };
                }
                builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            Provider::Azure => {
                use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
                let mut builder =
                    MicrosoftAzureBuilder::from_env().with_container_name(&self.bucket);
                for (key, value) in &self.options {
                    builder = builder.with_config(
                        key.parse::<AzureConfigKey>().map_err(|_| unknown(key))?,
                        value,
                    );
                }
                builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            Provider::Gcs => {
                use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
                let mut builder =
                    GoogleCloudStorageBuilder::from_env().with_bucket_name(&self.bucket);
                for (key, value) in &self.options {
                    builder = builder.with_config(
                        key.parse::<GoogleConfigKey>().map_err(|_| unknown(key))?,
                        value,
                    );
                }
                builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
        };
        built.map_err(|e| format!("the object store cannot be set up ({e})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<BlobLocation, LocationError> {
        BlobLocation::parse(Some(value), std::path::Path::new("/data"))
    }

    #[test]
    fn default_and_folders_are_local() {
        let default = BlobLocation::parse(None, std::path::Path::new("/data")).expect("default");
        assert_eq!(default, BlobLocation::Local("/data/blobs".into()));
        assert_eq!(
            parse("/srv/blobs").expect("dir"),
            BlobLocation::Local("/srv/blobs".into())
        );
        assert_eq!(
            parse("file:///srv/blobs").expect("file url"),
            BlobLocation::Local("/srv/blobs".into())
        );
    }

    #[test]
    fn object_store_urls_keep_bucket_prefix_and_options() {
        let parsed = parse("s3://models/berth/prod/?path_style=true&region=eu-west-1&endpoint=http://127.0.0.1:9&allow_http=true")
            .expect("s3");
        let BlobLocation::Remote(remote) = parsed else {
            panic!("not remote: {parsed:?}");
        };
        assert_eq!(remote.provider, Provider::S3);
        assert_eq!(remote.bucket, "models");
        assert_eq!(remote.prefix, "berth/prod");
        assert_eq!(remote.display(), "s3://models/berth/prod");
        assert_eq!(remote.options.len(), 4);
    }

    #[test]
    fn secrets_in_options_are_not_echoed() {
        let err = parse("s3://b/p?secret_access_key=hush&colour=blue")
            .expect_err("unknown option")
            .to_string();
        assert!(!err.contains("hush"), "{err}");
        assert!(err.contains("secret_access_key=***&colour=blue"), "{err}");
        let parsed = parse("s3://b/p?access_key_id=k&secret_access_key=hush&region=eu-west-1")
            .expect("valid");
        let shown = format!("{parsed:?}");
        assert!(
            !shown.contains("hush") && shown.contains("region=eu-west-1"),
            "{shown}"
        );
    }

    #[test]
    fn bad_values_name_the_flag_the_value_and_the_forms() {
        for (value, reason) in [
            ("ftp://host/x", "scheme `ftp`"),
            ("s3:///prefix", "bucket"),
            ("s3://b/p?no_such_option=1", "`no_such_option`"),
            ("file://relative", "absolute"),
            ("  ", "empty"),
        ] {
            let err = parse(value).expect_err(value).to_string();
            assert!(err.contains("`--blobs`"), "{err}");
            assert!(err.contains(value), "{err}");
            assert!(err.contains(reason), "{value}: {err}");
            assert!(err.contains("s3://bucket/prefix"), "{err}");
        }
    }
}
