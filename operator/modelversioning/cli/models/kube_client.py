"""The API server through the kubernetes client, for the credentials :mod:`.apiserver` leaves to it (an
exec plugin, an auth-provider, a proxy, in-cluster, a kubeconfig it cannot read as it expects). The
same operations as :class:`.apiserver.HttpApi`, with the same errors; the client loads (0.3-0.4 s)
when the first request is made.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from modelversioning.api.wire import SELF_SUBJECT_ACCESS_REVIEW, SELF_SUBJECT_REVIEW, Resource
from modelversioning.cli.models.apiserver import WatchBroken, WatchExpired
from modelversioning.cli.models.errors import ClusterError, api_error_message


def connect(kubeconfig_paths: list[str] | None, context: str | None) -> ClientApi:
    """The client configured from the kubeconfig files (None: in-cluster), like kubectl."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    logging.getLogger("urllib3").setLevel(logging.ERROR)
    cfg = client.Configuration()
    try:
        if kubeconfig_paths is None:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.pathsep.join(kubeconfig_paths),
                context=context,
                client_configuration=cfg,
                persist_config=False,
            )
    except ConfigException as e:
        raise ClusterError(f"invalid kubeconfig: {e}") from None
    cfg.retries = 1
    return ClientApi(client.ApiClient(cfg))


class ClientApi:
    def __init__(self, api: Any) -> None:
        self.api = api
        self.server = str(api.configuration.host)

    def _co(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return dict(fn(*args, **kwargs))
        except ApiException as e:
            raise ClusterError(api_error_message(e.reason, e.body), e.status) from None
        except HTTPError as e:
            raise ClusterError(f"cannot reach the API server {self.server}: {e}") from None

    def _call_raw(self, fn: Callable[..., Any], *args: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args)
        except ApiException as e:
            raise ClusterError(api_error_message(e.reason, e.body), e.status) from None
        except HTTPError as e:
            raise ClusterError(f"cannot reach the API server {self.server}: {e}") from None

    def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any]:
        co = self._co()
        return self._call(
            co.get_namespaced_custom_object, res.group, res.version, namespace, res.plural, name
        )

    def list(
        self,
        res: Resource,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        co = self._co()
        kw: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
        if field_selector:
            kw["field_selector"] = field_selector
        if namespace is None:
            return self._call(co.list_cluster_custom_object, res.group, res.version, res.plural, **kw)
        return self._call(
            co.list_namespaced_custom_object, res.group, res.version, namespace, res.plural, **kw
        )

    def create(self, res: Resource, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        co = self._co()
        args = (res.group, res.version, namespace, res.plural, body)
        return self._call(co.create_namespaced_custom_object, *args)

    def merge_patch(
        self, res: Resource, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """application/merge-patch+json (the client's default for custom objects)."""
        co = self._co()
        args = (res.group, res.version, namespace, res.plural, name, patch)
        return self._call(co.patch_namespaced_custom_object, *args)

    def self_subject_review(self) -> dict[str, Any]:
        from kubernetes import client

        kind = SELF_SUBJECT_REVIEW
        review = client.AuthenticationV1Api(self.api).create_self_subject_review(
            client.V1SelfSubjectReview(api_version=kind.api_version, kind=kind.kind)
        )
        return dict(self.api.sanitize_for_serialization(review))

    def self_subject_access_review(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        from kubernetes import client

        kind = SELF_SUBJECT_ACCESS_REVIEW
        body = {
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "spec": {"resourceAttributes": dict(attributes)},
        }
        review = self._call_raw(client.AuthorizationV1Api(self.api).create_self_subject_access_review, body)
        return dict(self.api.sanitize_for_serialization(review))

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        field_selector: str,
        resource_version: str,
        seconds: int,
        read_timeout: float,
    ) -> Iterator[dict[str, Any]]:
        """As :meth:`.apiserver.HttpApi.watch`."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        w = watch.Watch()  # type: ignore[no-untyped-call]
        co = self._co()
        where: tuple[Any, ...] = (
            (co.list_namespaced_custom_object, res.group, res.version, namespace, res.plural)
            if namespace
            else (co.list_cluster_custom_object, res.group, res.version, res.plural)
        )
        try:
            yield from w.stream(  # type: ignore[no-untyped-call]
                *where,
                field_selector=field_selector,
                resource_version=resource_version,
                timeout_seconds=seconds,
                _request_timeout=(10, read_timeout),
            )
        except ApiException as e:
            if e.status == 410:
                raise WatchExpired() from None
            raise ClusterError(api_error_message(e.reason, e.body), e.status) from None
        except HTTPError as e:
            raise WatchBroken(str(e)) from None
        finally:
            w.stop()  # type: ignore[no-untyped-call]
