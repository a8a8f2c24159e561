//! Wire types of the Berth management API.
//!
//! Everything a client and the server exchange over `/v1` lives here: request and
//! response bodies (camelCase JSON, like the Azure ML v1 REST API), the stable error
//! codes, and the naming rules both sides check. This crate has no I/O and no async:
//! the CLI and the SDK can do only what these types allow.

pub mod bundle;
pub mod compute;
pub mod deployment;
pub mod duration;
pub mod environment;
pub mod error;
pub mod events;
pub mod model;
pub mod names;
pub mod rollout;
pub mod service;
pub mod snapshot;
pub mod studio;
pub mod traffic_split;
pub mod workspace;

pub use compute::{ComputeTarget, ComputeTargetList, LOCAL_COMPUTE, PutComputeTargetRequest};
pub use deployment::{ComputeType, DeploymentSettings, FollowPolicy};
pub use environment::{
    BuildState, Environment, EnvironmentBuild, EnvironmentList, EnvironmentSpec,
    RegisterEnvironmentRequest, RegisterEnvironmentResponse,
};
pub use error::{ErrorBody, ErrorCode};
pub use events::{
    CreateWebhookRequest, CreatedWebhook, EVENT_TYPES, Event, EventList, Webhook, WebhookList,
    is_event_type,
};
pub use model::{
    AliasMoved, FollowerAction, FollowerPlan, Model, ModelAlias, ModelAliasList, ModelFile,
    ModelKind, ModelList, RegisterModelMetadata, SetAliasRequest, UpdateModelRequest,
};
pub use rollout::{
    GateFigure, GateKind, GateVerdict, MirrorDiff, MirrorDiffList, MirrorSide, MirrorStatus,
    RevisionFigures, RolloutSettings, RolloutStatus, RolloutStrategy, SetMirrorRequest,
    SetTrafficRequest, ShadowSettings, Traffic, TrafficEntry, TrafficShare,
};
pub use service::{
    CreateServiceRequest, Follow, InferenceConfigRequest, InferenceSpec, Operation,
    OperationAccepted, OperationError, OperationErrorCode, OperationEvent, OperationState,
    OperationType, RegenerateKeyRequest, Revision, RevisionList, RollbackRequest, Service,
    ServiceKeys, ServiceList, ServiceLogs, ServiceSpec, ServiceState, ServiceToken,
};
pub use snapshot::Snapshot;
pub use studio::{SeriesList, SeriesPoint, ServiceSeries, StudioCode};
pub use workspace::{ClientConfig, WorkspaceInfo};
