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

    def get(self, key: tuple, load: Callable[[], T], need: int | None = None,
            free: Callable[[], int] | None = None) -> T:
        """The cached value of key, or load() it. key = (model id, device, ...).

        need  the bytes the model will take (registry.memory.estimate_bytes), known before loading: a
              model larger than the budget is refused unloaded, and older models are evicted first so
              the new one loads into freed memory
        free  the device's free bytes now (registry.memory.free_bytes), checked against `need` after
              the eviction; a CUDA out-of-memory error while loading becomes a ModelTooLargeError too"""
        from designerbox.registry.memory import ModelTooLargeError, check_fits, mib, out_of_memory

        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key][0]
        device = key[1] if len(key) > 1 else "cpu"
        if need is not None:
            check_fits(key[0], need, self.budget_bytes, None, device)
            self._evict(need)
            check_fits(key[0], need, self.budget_bytes, free() if free else None, device)
        try:
            value = load()
        except torch.cuda.OutOfMemoryError:
            raise out_of_memory(key[0], device, "loading its weights") from None
        size = self.size_of(value)
        if size > self.budget_bytes:
            raise ModelTooLargeError(f"model {key[0]} needs {mib(size)}, more than the model cache's budget of "
                                     f"{mib(self.budget_bytes)} (set DESIGNERBOX_CACHE_MB to raise it)")
        self._evict(size)
        self._items[key] = (value, size)
        return value

    def _evict(self, size: int) -> None:
        """Drop least-recently-used models until `size` more bytes fit in the budget, and give their memory back."""
        import gc

        dropped = False
        while self._items and self.used_bytes + size > self.budget_bytes:
            self._items.popitem(last=False)
            dropped = True
        if dropped:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def clear(self) -> None:
        self._items.clear()
