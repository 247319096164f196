from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        from gateway.runtime.snapshot import snapshot_holder
        from switchboard.config_version import on_config_change

        on_config_change(snapshot_holder.invalidate)
