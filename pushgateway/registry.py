"""register(): publish hints when a model's instances are saved or deleted."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db.models import Model
from django.db.models.signals import post_delete, post_save

from .exceptions import AlreadyRegistered, HintTooLarge, InvalidChannelName, NotRegistered
from .publishing import publish

logger = logging.getLogger("pushgateway")

ACTIONS = ("created", "updated", "deleted")

ChannelsFor = Callable[[Model], "str | Iterable[str]"]


def object_channel(instance: Model) -> str:
    """The default channel of an object: "<app_label>.<model_name>.<pk>"."""
    return f"{instance._meta.label_lower}.{instance.pk}"


@dataclass(frozen=True)
class Registration:
    model: type[Model]
    channels: ChannelsFor | None
    actions: tuple[str, ...]

    def channels_for(self, instance: Model) -> list[str]:
        names = [object_channel(instance)]
        if self.channels is not None:
            extra = self.channels(instance)
            names.extend([extra] if isinstance(extra, str) else extra)
        return list(dict.fromkeys(names))

    def publish(self, instance: Model, action: str, using: str) -> None:
        if action not in self.actions:
            return
        hint = {"model": instance._meta.label_lower, "pk": str(instance.pk), "action": action}
        for channel in self.channels_for(instance):
            try:
                publish(channel, hint, using=using)
            except (InvalidChannelName, HintTooLarge) as exc:
                # A pk or a channels() result that makes no valid name (or a primary key too
                # long for a hint) must not fail the save.
                logger.error("pushgateway: no hint for %s %s: %s", hint["model"], hint["pk"], exc)


_registry: dict[type[Model], Registration] = {}


def _on_save(sender, instance, created, raw=False, using=None, **kwargs):
    if raw:  # loaddata: fixtures are not changes anyone is watching
        return
    _registry[sender].publish(instance, "created" if created else "updated", using)


def _on_delete(sender, instance, using=None, **kwargs):
    _registry[sender].publish(instance, "deleted", using)


def register(
    model: type[Model] | None = None,
    *,
    channels: ChannelsFor | None = None,
    actions: Iterable[str] = ACTIONS,
):
    """Publish a hint on every save or delete of `model`'s instances.

    The hint goes to the object's channel "<app_label>.<model_name>.<pk>" and to each name
    `channels(instance)` returns. Usable as a class decorator, with or without arguments.
    """
    if model is None:
        return lambda model: register(model, channels=channels, actions=actions)
    actions = tuple(actions)
    unknown = sorted(set(actions) - set(ACTIONS))
    if unknown:
        raise ValueError(f"unknown actions {unknown}; choose from {list(ACTIONS)}")
    if model in _registry:
        raise AlreadyRegistered(f"{model._meta.label} is registered with pushgateway already")
    _registry[model] = Registration(model, channels, actions)
    uid = f"pushgateway:{model._meta.label}"
    post_save.connect(_on_save, sender=model, weak=False, dispatch_uid=uid)
    post_delete.connect(_on_delete, sender=model, weak=False, dispatch_uid=uid)
    return model


def unregister(model: type[Model]) -> None:
    if _registry.pop(model, None) is None:
        raise NotRegistered(f"{model._meta.label} is not registered with pushgateway")
    uid = f"pushgateway:{model._meta.label}"
    post_save.disconnect(sender=model, dispatch_uid=uid)
    post_delete.disconnect(sender=model, dispatch_uid=uid)


def is_registered(model: type[Model]) -> bool:
    return model in _registry
