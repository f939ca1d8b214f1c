"""The ``import_path`` targets of the serve config: Serve calls these with each application's ``args``.

Validating ``args`` here with the contract's models makes a malformed serve config fail the application's
build with a readable pydantic message (DEPLOY_FAILED in status) instead of a crash inside a replica.
"""

from __future__ import annotations

from typing import Any, cast

from ray.serve import Application

from lmops_runtime.config import RouterArgs, ServerArgs


def build_router(args: dict[str, Any]) -> Application:
    """Application ``lm``: the Router ingress; its RouterConfig arrives as the deployment's user_config."""
    from lmops_runtime.router.ingress import Router

    router_args = RouterArgs.model_validate(args)
    app: Application = cast(Any, Router).bind(router_args.model_dump(mode="json"))
    return app


def build_server(args: dict[str, Any]) -> Application:
    """Application ``rev-<revision>``: one model revision's ModelServer, reached only through handles."""
    from lmops_runtime.model_server import ModelServer

    server_args = ServerArgs.model_validate(args)
    app: Application = cast(Any, ModelServer).bind(server_args.model_dump(mode="json"))
    return app
