"""`sms_configs`: text messages through an HTTP SMS gateway, Twilio's way: one form-encoded POST per
recipient to `url` with `From`, `To` and `Body` (names configurable for other gateways), credentials
from `http_config` (Twilio: basic auth with the account SID and auth token).

The body renders `text` (default `vigil.sms.text`: the title and one line per alert with its graph
link, plain ASCII so a segment holds 160 characters) and is cut to 1600 characters, Twilio's limit.
Every recipient is tried even when one fails, so one bad number does not silence the others; the
notification then fails with the first error (retryable if any failure was), and the pipeline's
retry sends to every recipient again.
"""

from __future__ import annotations

from collections.abc import Sequence

from vigil.notifier.alert import Alert
from vigil.notifier.config import GlobalConfig, SmsConfig
from vigil.notifier.integration import NotifyContext, NotifyError
from vigil.notifier.receivers.common import IntegrationBase, http_config, timeout_s
from vigil.notifier.receivers.sender import HTTPSender
from vigil.notifier.templates import Renderer, Templater, template_data, truncate

__all__ = ["BODY_MAX", "DEFAULT_TEXT", "SmsIntegration"]

BODY_MAX = 1600
DEFAULT_TEXT = '{{ template "vigil.sms.text" . }}'


class SmsIntegration(IntegrationBase):
    kind = "sms"

    def __init__(
        self,
        config: SmsConfig,
        global_: GlobalConfig,
        templater: Templater,
        index: int = 0,
        *,
        external_url: str = "",
    ) -> None:
        super().__init__(index, config.sends_resolved, external_url)
        self.config = config
        self.templater = templater
        self.sender = HTTPSender(self.label, http_config(config.http_config, global_), timeout_s(None))

    def body(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> str:
        data = template_data(ctx, alerts, self.external_url)
        text = Renderer(self.label, self.templater, data)("text", self.config.text or DEFAULT_TEXT)
        return truncate(text.strip(), BODY_MAX)

    def notify(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> None:
        c = self.config
        body = self.body(ctx, alerts)
        errors: list[NotifyError] = []
        for i, to in enumerate(c.to):
            try:
                self.sender.post_checked(
                    c.url, form={c.from_field: c.from_, c.to_field: to, c.body_field: body}
                )
            except NotifyError as exc:
                errors.append(NotifyError(f"to[{i}]: {exc}", retryable=exc.retryable))
        if errors:
            failed = f"{len(errors)} of {len(c.to)} recipients failed"
            raise NotifyError(f"{failed}; {errors[0]}", retryable=any(e.retryable for e in errors))
