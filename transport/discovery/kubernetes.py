"""Kubernetes discovery: the pods behind a headless service, found through cluster DNS."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from transport.discovery.dns import DnsDiscovery

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def pod_namespace(
    environ: Mapping[str, str] | None = None, service_account_dir: Path = SERVICE_ACCOUNT_DIR
) -> str:
    """FOUNDATION_K8S_NAMESPACE, else POD_NAMESPACE, else the service account's, else default."""
    env = os.environ if environ is None else environ
    for variable in ("FOUNDATION_K8S_NAMESPACE", "POD_NAMESPACE"):
        if env.get(variable):
            return env[variable]
    try:
        return (service_account_dir / "namespace").read_text().strip() or "default"
    except OSError:
        return "default"


def headless_service_name(
    service: str,
    environ: Mapping[str, str] | None = None,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> str:
    """`<service>.<namespace>.svc.<domain>`: the DNS name of a headless service's pods.

    The service is FOUNDATION_K8S_SERVICE if set, else `service`; the domain is
    FOUNDATION_K8S_DOMAIN, else cluster.local.
    """
    env = os.environ if environ is None else environ
    service = env.get("FOUNDATION_K8S_SERVICE") or service
    if "." in service:  # already qualified
        return service
    namespace = pod_namespace(env, service_account_dir)
    domain = env.get("FOUNDATION_K8S_DOMAIN") or "cluster.local"
    return f"{service}.{namespace}.svc.{domain}"


class KubernetesDiscovery(DnsDiscovery):
    """DNS discovery of a headless service's pods (a StatefulSet or Deployment behind
    `clusterIP: None`): one A record per ready pod, optionally SRV for a named port."""

    name = "kubernetes"

    def __init__(
        self,
        service: str,
        port: int | None = None,
        interval: float = 5.0,
        nameservers: Sequence[str] | None = None,
        timeout: float = 2.0,
        environ: Mapping[str, str] | None = None,
        service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    ) -> None:
        super().__init__(
            headless_service_name(service, environ, service_account_dir),
            port=port,
            interval=interval,
            nameservers=nameservers,
            timeout=timeout,
        )
