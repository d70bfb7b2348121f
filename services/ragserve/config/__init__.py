"""Configuration: one pydantic model per role, loaded from a profile, a YAML file and the environment.

Precedence (later wins): the model's defaults < the profile's YAML shipped in ``ragserve/profiles/`` < the
user's ``--config`` YAML < environment variables ``RAGSERVE__<SECTION>__<FIELD>=value`` (values parsed as YAML
scalars) < explicit overrides. The same ``AppConfig`` drives the CLI, the local ``serve`` and the
RayService's ``serveConfigV2``.

Modules (each imports only those before it): ``base`` (Section, ConfigError), ``profiles`` (the profile
files), ``serve`` (Serve options, resources), ``models``, ``query``, ``ingest`` (role sections), ``settings``
(router, observability, AppConfig), ``defaults`` (the model's defaults as a tree), ``loading`` (profile <
file < environment). Callers import from ``ragserve.config``.
"""

from ragserve.config.base import ConfigError, Section
from ragserve.config.defaults import model_defaults
from ragserve.config.ingest import IngestConfig, IngestRayConfig
from ragserve.config.loading import (
    ENV_PREFIX,
    build_config,
    deep_merge,
    dump_config,
    env_overrides,
    format_validation_error,
    load_config,
)
from ragserve.config.models import (
    BUNDLED_MINILM,
    SMOLLM2,
    TINY_CROSS_ENCODER,
    TINY_LLAMA,
    EmbedderConfig,
    GeneratorConfig,
    RerankerConfig,
    SamplingConfig,
    StoreConfig,
    TorchDevice,
    check_torch_device,
)
from ragserve.config.profiles import PROFILES, profile_defaults
from ragserve.config.query import DEFAULT_SYSTEM_PROMPT, ConversationMethod, PromptConfig, RetrievalConfig
from ragserve.config.serve import Autoscaling, Backpressure, GeneratorResources, Resources, ServeOptions
from ragserve.config.settings import (
    AppConfig,
    AuthConfig,
    ObservabilityConfig,
    OidcConfig,
    RouterConfig,
    ScopeName,
    TracingConfig,
    default_data_dir,
    read_only,
)

__all__ = [
    "BUNDLED_MINILM",
    "DEFAULT_SYSTEM_PROMPT",
    "ENV_PREFIX",
    "PROFILES",
    "SMOLLM2",
    "TINY_CROSS_ENCODER",
    "TINY_LLAMA",
    "AppConfig",
    "AuthConfig",
    "Autoscaling",
    "Backpressure",
    "ConfigError",
    "ConversationMethod",
    "EmbedderConfig",
    "GeneratorConfig",
    "GeneratorResources",
    "IngestConfig",
    "IngestRayConfig",
    "ObservabilityConfig",
    "OidcConfig",
    "PromptConfig",
    "RerankerConfig",
    "Resources",
    "RetrievalConfig",
    "RouterConfig",
    "SamplingConfig",
    "ScopeName",
    "Section",
    "ServeOptions",
    "StoreConfig",
    "TorchDevice",
    "TracingConfig",
    "build_config",
    "check_torch_device",
    "deep_merge",
    "default_data_dir",
    "dump_config",
    "env_overrides",
    "format_validation_error",
    "load_config",
    "model_defaults",
    "profile_defaults",
    "read_only",
]
