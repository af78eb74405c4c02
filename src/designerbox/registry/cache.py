"""A cache of loaded models, owned by whoever creates it (CLI run, server, worker), bounded by bytes."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, TypeVar

import torch

T = TypeVar("T")


def module_bytes(obj) -> int:
    """Bytes held by the parameters and buffers of every nn.Module attribute of obj (or obj itself)."""
    modules = [obj] if isinstance(obj, torch.nn.Module) else [
        v for v in vars(obj).values() if isinstance(v, torch.nn.Module)]
    return sum(t.numel() * t.element_size() for m in modules for t in (*m.parameters(), *m.buffers()))


class ModelCache(Generic[T]):
    """Least-recently-used models are evicted until a new one fits in `budget_bytes`."""

    def __init__(self, budget_bytes: int = 8 * 2**30, size_of: Callable[[T], int] = module_bytes):
        self.budget_bytes = budget_bytes
        self.size_of = size_of
        self._items: OrderedDict[tuple, tuple[T, int]] = OrderedDict()

    def __contains__(self, key: tuple) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def used_bytes(self) -> int:
        return sum(size for _, size in self._items.values())

    def get(self, key: tuple, load: Callable[[], T]) -> T:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key][0]
        value = load()
        size = self.size_of(value)
        if size > self.budget_bytes:
            raise MemoryError(f"model {key[0]} needs {size / 2**20:.0f} MiB, more than the model cache's budget of "
                              f"{self.budget_bytes / 2**20:.0f} MiB (set DESIGNERBOX_CACHE_MB to raise it)")
        while self._items and self.used_bytes + size > self.budget_bytes:
            self._items.popitem(last=False)
        self._items[key] = (value, size)
        return value

    def clear(self) -> None:
        self._items.clear()
