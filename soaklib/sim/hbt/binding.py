"""hftbacktest's C API for ``@njit(cache=True)`` code: the subset the strategy uses.

hftbacktest's own binding (``hftbacktest.binding``) is a numba jitclass whose methods call ctypes
function pointers; their addresses are baked into the compiled code, so numba refuses to cache any
function using it and every fresh process recompiled the strategy (~20-30 s). Here the same C
functions are ``numba.types.ExternalFunction``s, resolved by symbol NAME when the (cached) machine
code is linked; the shared library is loaded into the process (``load_library_permanently``) when
this module is imported, i.e. before any such code is linked.

Each function mirrors the jitclass method or property of the same name (same C call, same argument
conversions). A backtest, a depth, an order map or an order is passed as its raw address (``int``;
C ``void*`` is declared as ``intp``, the same register on the 64-bit platforms hftbacktest ships
for); ``bt`` is ``HashMapMarketDepthBacktest(...).ptr`` or ``hftbacktest.build_hashmap_backtest``'s
result. An order is read like ``hftbacktest.order.Order`` does: a 1-row ``carray`` of ``order_dtype``
over the order's memory (fields read when accessed, so they are current).
"""
from __future__ import annotations

from hftbacktest import _hftbacktest
from hftbacktest.intrinsic import address_as_void_pointer
from hftbacktest.order import NEW, NONE, PARTIALLY_FILLED
from hftbacktest.types import order_dtype, state_values_dtype
from llvmlite import binding as llvm
from numba import carray, njit, types

llvm.load_library_permanently(_hftbacktest.__file__)

_ptr = types.intp  # C void*


def _ext(name: str, sig) -> types.ExternalFunction:
    return types.ExternalFunction(name, sig)


# argument and result types as hftbacktest.binding declares them with ctypes (c_void_p -> _ptr)
_bt_elapse = _ext("hashmapbt_elapse", types.int64(_ptr, types.uint64))
_bt_current_timestamp = _ext("hashmapbt_current_timestamp", types.int64(_ptr))
_bt_depth = _ext("hashmapbt_depth", _ptr(_ptr, types.uint64))
_bt_position = _ext("hashmapbt_position", types.float64(_ptr, types.uint64))
_bt_orders = _ext("hashmapbt_orders", _ptr(_ptr, types.uint64))
_bt_state_values = _ext("hashmapbt_state_values", _ptr(_ptr, types.uint64))
_order_args = (_ptr, types.uint64, types.uint64, types.float64, types.float64, types.uint8, types.uint8,
               types.boolean)
_bt_submit_buy_order = _ext("hashmapbt_submit_buy_order", types.int64(*_order_args))
_bt_submit_sell_order = _ext("hashmapbt_submit_sell_order", types.int64(*_order_args))
_bt_cancel = _ext("hashmapbt_cancel", types.int64(_ptr, types.uint64, types.uint64, types.boolean))
_bt_clear_inactive_orders = _ext("hashmapbt_clear_inactive_orders", _ptr(_ptr, types.uint64))
_bt_close = _ext("hashmapbt_close", types.int64(_ptr))
_depth_best_bid_tick = _ext("hashmapdepth_best_bid_tick", types.int64(_ptr))
_depth_best_ask_tick = _ext("hashmapdepth_best_ask_tick", types.int64(_ptr))
_depth_tick_size = _ext("hashmapdepth_tick_size", types.float64(_ptr))
_depth_lot_size = _ext("hashmapdepth_lot_size", types.float64(_ptr))
_orders_get = _ext("orders_get", _ptr(_ptr, types.uint64))
_orders_values = _ext("orders_values", _ptr(_ptr))
_orders_values_next = _ext("orders_values_next", _ptr(_ptr))


# -- HashMapMarketDepthBacktest ------------------------------------------------------------------

@njit(cache=True)
def elapse(bt, duration):
    return _bt_elapse(bt, duration)


@njit(cache=True)
def current_timestamp(bt):
    return _bt_current_timestamp(bt)


@njit(cache=True)
def depth(bt, asset_no):
    """The asset's market depth (address for the ``depth_*`` functions)."""
    return _bt_depth(bt, asset_no)


@njit(cache=True)
def position(bt, asset_no):
    return _bt_position(bt, asset_no)


@njit(cache=True)
def orders(bt, asset_no):
    """The asset's order map (address for ``orders_get`` / ``orders_values``)."""
    return _bt_orders(bt, asset_no)


@njit(cache=True)
def submit_buy_order(bt, asset_no, order_id, price, qty, time_in_force, order_type, wait):
    return _bt_submit_buy_order(bt, asset_no, order_id, price, qty, time_in_force, order_type, wait)


@njit(cache=True)
def submit_sell_order(bt, asset_no, order_id, price, qty, time_in_force, order_type, wait):
    return _bt_submit_sell_order(bt, asset_no, order_id, price, qty, time_in_force, order_type, wait)


@njit(cache=True)
def cancel(bt, asset_no, order_id, wait):
    return _bt_cancel(bt, asset_no, order_id, wait)


@njit(cache=True)
def clear_inactive_orders(bt, asset_no):
    _bt_clear_inactive_orders(bt, asset_no)


@njit(cache=True)
def state_values(bt, asset_no):
    """1-row ``carray`` of ``state_values_dtype`` (position, balance, fee, num_trades, ...)."""
    return carray(address_as_void_pointer(_bt_state_values(bt, asset_no)), 1, state_values_dtype)


@njit(cache=True)
def close(bt):
    return _bt_close(bt)


# -- HashMapMarketDepth ----------------------------------------------------------------------------

@njit(cache=True)
def depth_best_bid_tick(d):
    return _depth_best_bid_tick(d)


@njit(cache=True)
def depth_best_ask_tick(d):
    return _depth_best_ask_tick(d)


@njit(cache=True)
def depth_tick_size(d):
    return _depth_tick_size(d)


@njit(cache=True)
def depth_lot_size(d):
    return _depth_lot_size(d)


# -- OrderDict, its values iterator, Order ---------------------------------------------------------

@njit(cache=True)
def orders_get(od, order_id):
    """The order's address, 0 where ``OrderDict.get`` returns None."""
    return _orders_get(od, order_id)


@njit(cache=True)
def orders_values(od):
    """An iterator over the map's orders, advanced by ``orders_values_next`` (``Values.has_next``);
    the map must not change while it is iterated."""
    return _orders_values(od)


@njit(cache=True)
def orders_values_next(it):
    """The next order's address, 0 at the end."""
    return _orders_values_next(it)


@njit(cache=True)
def order(addr):
    """The order at ``addr`` as ``hftbacktest.order.Order`` holds it: a 1-row carray of order_dtype."""
    return carray(address_as_void_pointer(addr), 1, order_dtype)


@njit(cache=True)
def cancellable(o):
    """``Order.cancellable`` for an ``order(...)`` array."""
    return (o[0].status == NEW or o[0].status == PARTIALLY_FILLED) and o[0].req == NONE
