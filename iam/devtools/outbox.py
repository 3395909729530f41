"""Dev mode only: the SMS outbox (codes the console backend "sent") and a code catcher."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from iam.services.sms import ConsoleSms
from iam.web import Web


async def outbox(request: Request) -> Response:
    web: Web = request.app.state.web
    sms = request.app.state.sms
    messages = sms.messages() if isinstance(sms, ConsoleSms) else []
    return web.render(request, "dev/outbox.html", {"messages": messages})


async def callback(request: Request) -> Response:
    """Where the demo client's redirect lands: shows the code so a person can exchange it."""
    web: Web = request.app.state.web
    return web.render(
        request, "dev/callback.html", {"params": list(request.query_params.multi_items())}
    )


routes = [Route("/dev/outbox", outbox), Route("/dev/callback", callback)]
