"""Ray Serve's per-deployment options (updated in place) and the resources each replica reserves."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ragserve.config.base import Section

# Sizing has no default in code: replicas, the target load, in-flight requests and CPUs depend on the machines
# a profile targets, so every profile states them for every deployment. The rest defaults here, like every
# other field (docs/configuration.md, "Who owns a default"). The Helm chart sees these defaults through its
# generated app-defaults.yaml, so the blocks it renders are whole (Serve replaces a deployment's whole
# autoscaling_config with the one in serveConfigV2).


class Autoscaling(Section):
    """Ray Serve's ``autoscaling_config`` of one deployment (Serve's own key names)."""

    min_replicas: int = Field(ge=0, le=1000, description="Autoscaling lower bound (0 = scale to zero).")
    max_replicas: int = Field(ge=1, le=1000, description="Autoscaling upper bound.")
    initial_replicas: int | None = Field(None, ge=0, description="Replicas at start (null = min_replicas).")
    target_ongoing_requests: float = Field(
        gt=0, description="In-flight requests per replica the autoscaler aims for."
    )
    upscale_delay_s: float = Field(5, ge=0, description="Sustained load needed before adding replicas.")
    downscale_delay_s: float = Field(60, ge=0, description="Sustained idleness before removing replicas.")
    look_back_period_s: float = Field(30, gt=0, description="Window over which load is averaged.")

    @model_validator(mode="after")
    def _check_bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        if self.initial_replicas is not None and not (
            self.min_replicas <= self.initial_replicas <= self.max_replicas
        ):
            raise ValueError(f"initial_replicas ({self.initial_replicas}) must be within min/max replicas")
        return self


class Backpressure(Section):
    """Ray Serve's ``backpressure_config``: the answer when ``max_queued_requests`` is reached."""

    status_code: Literal[503, 429] = Field(503, description="HTTP status of a request shed by a full queue.")
    retry_after_s: float = Field(1, ge=0, description="Retry-After (seconds) sent with that status.")


class ServeOptions(Section):
    """The options Ray Serve updates in place, without restarting replicas, under Serve's own names.

    This block is the one owner of scaling and admission: ``ragserve serve`` passes it to
    ``serve.deployment()``, and serveConfigV2 carries it verbatim as the deployment's entry in
    ``deployments:`` (never in ``args``, whose every change rebuilds the application). See
    docs/kubernetes.md, "Who owns which setting".
    """

    autoscaling_config: Autoscaling = Field(description="Replicas and autoscaling.")
    max_ongoing_requests: int = Field(ge=1, le=100_000, description="In-flight requests per replica.")
    max_queued_requests: int = Field(
        -1, ge=-1, description="Requests queued per caller before they are shed (-1 = unbounded)."
    )
    backpressure_config: Backpressure = Field(
        default_factory=Backpressure, description="Status and Retry-After of shed requests."
    )
    max_surge_percent: int = Field(
        100,
        ge=0,
        le=100,
        description="Extra replicas Serve may start while it replaces replicas (an `args` or code change), "
        "as a percentage of the target, rounded up: 100 starts each replacement before its old replica "
        "stops (a one-replica deployment keeps serving); 0, Serve's default, stops the old one first.",
    )


class Resources(Section):
    """Logical resources Ray reserves per replica. Part of the application (``args``): changing them
    restarts the replicas, as a new placement needs to."""

    num_cpus: float = Field(ge=0, description="Logical CPUs reserved per replica.")
    num_gpus: float = Field(0, ge=0, description="GPUs reserved per replica.")


class GeneratorResources(Section):
    """The generator's CPUs; its GPUs follow from tensor x pipeline parallelism (never set by hand)."""

    num_cpus: float = Field(ge=0, description="Logical CPUs reserved per replica (and per GPU pod).")
