"""Circuit Training's proxy cost (wirelength, density, congestion), in numba, with incremental updates.

The definitions are those of Circuit Training's ``plc_client`` as documented and reimplemented by the
TILOS MacroPlacement project (Docs/ProxyCost, CodeElements/Plc_client/plc_client_os.py):

- wirelength: sum over nets of weight x half-perimeter of the pins' bounding box, divided by
  (canvas width + height) x net count (the sum of the drivers' weights, a port counting 1);
- density: each grid cell's area covered by macros (hard, soft; no standard cells, as plc_client) over the cell's area;
  the mean of the densest 10% of cells (of the occupied cells when the grid has fewer than 10), x 0.5;
- congestion: each net is routed over the grid cells its pins occupy (two cells: an L from the source;
  three: the L/T patterns; more: a star from the source's cell), adding its weight to the horizontal
  and vertical demand of the cells it crosses, normalized by the cell's tracks (cell height x horizontal
  routes per micron, cell width x vertical); that demand is smoothed over ``smoothing`` cells (vertical
  along the row, horizontal along the column), then each hard macro adds the tracks it blocks (overlap x
  macro routes per micron; a cell row/column the macro only partly covers at its top/right edge gets
  none); the cost is the mean of the worst 5% of the horizontal and vertical cells together.

The proxy cost is ``w_wl * wirelength + w_den * density + w_cong * congestion`` (default 1 / 0.5 / 0.5).
``ProxyCost.move`` updates the state after one module moves by touching only its nets and footprint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .problem import KIND_HARD, KIND_PORT, ChipProblem

DEFAULT_WEIGHTS = (1.0, 0.5, 0.5)


@dataclass
class CostReport:
    """The proxy cost and its three components (each as Circuit Training reports it, unweighted)."""

    proxy: float
    wirelength: float
    density: float
    congestion: float

    def as_dict(self) -> dict[str, float]:
        return {"proxy": self.proxy, "wirelength": self.wirelength, "density": self.density,
                "congestion": self.congestion}


@njit(cache=True)
def pin_xy(p, x, y, orient, pin_mod, pin_dx, pin_dy):
    """Pin p's position: its module's centre plus its offset turned by the module's orientation (shared with
    the RL placer's position features, so both read pins the same way)."""
    m = pin_mod[p]
    dx = pin_dx[p]
    dy = pin_dy[p]
    o = orient[m]
    if o == 0:
        return x[m] + dx, y[m] + dy
    if o == 1:
        return x[m] - dx, y[m] - dy
    if o == 2:
        return x[m] + dy, y[m] - dx
    if o == 3:
        return x[m] - dy, y[m] + dx
    if o == 4:
        return x[m] - dx, y[m] + dy
    if o == 5:
        return x[m] + dx, y[m] - dy
    if o == 6:
        return x[m] - dy, y[m] - dx
    return x[m] + dy, y[m] + dx


@njit(cache=True)
def oriented_size(m, w, h, orient):
    """Module m's (width, height) as placed: swapped by the quarter-turn orientations E, W, FE, FW."""
    o = orient[m]
    if o == 2 or o == 3 or o == 6 or o == 7:
        return h[m], w[m]
    return w[m], h[m]


@njit(cache=True)
def _net_hpwl(k, x, y, orient, pin_mod, pin_dx, pin_dy, net_ptr, net_pins, net_weight):
    x0 = 1e300
    y0 = 1e300
    x1 = -1e300
    y1 = -1e300
    for j in range(net_ptr[k], net_ptr[k + 1]):
        px, py = pin_xy(net_pins[j], x, y, orient, pin_mod, pin_dx, pin_dy)
        x0 = min(x0, px)
        x1 = max(x1, px)
        y0 = min(y0, py)
        y1 = max(y1, py)
    return net_weight[k] * ((x1 - x0) + (y1 - y0))


@njit(cache=True)
def _cell_of(v, size, n):
    c = int(np.floor(v / size))
    if c < 0:
        return 0
    if c >= n:
        return n - 1
    return c


@njit(cache=True)
def _h_run(hn, row, c0, c1, cols, wt):
    for c in range(c0, c1):
        hn[row * cols + c] += wt


@njit(cache=True)
def _v_run(vn, col, r0, r1, cols, wt):
    for r in range(r0, r1):
        vn[r * cols + col] += wt


@njit(cache=True)
def _two_cells(hn, vn, rs, cs, rk, ck, cols, wt):
    _h_run(hn, rs, min(cs, ck), max(cs, ck), cols, wt)
    _v_run(vn, ck, min(rs, rk), max(rs, rk), cols, wt)


@njit(cache=True)
def _three_cells(hn, vn, rr, cc, cols, wt):
    # sort by (col, row)
    idx = np.argsort(cc * 1000003 + rr)
    y1, x1 = rr[idx[0]], cc[idx[0]]
    y2, x2 = rr[idx[1]], cc[idx[1]]
    y3, x3 = rr[idx[2]], cc[idx[2]]
    if x1 < x2 and x2 < x3 and min(y1, y3) < y2 and max(y1, y3) > y2:
        _h_run(hn, y1, x1, x2, cols, wt)
        _h_run(hn, y2, x2, x3, cols, wt)
        _v_run(vn, x2, min(y1, y2), max(y1, y2), cols, wt)
        _v_run(vn, x3, min(y2, y3), max(y2, y3), cols, wt)
        return
    if x2 == x3 and x1 < x2 and y1 < min(y2, y3):
        _h_run(hn, y1, x1, x2, cols, wt)
        _v_run(vn, x2, y1, max(y2, y3), cols, wt)
        return
    if y2 == y3:
        _h_run(hn, y1, x1, x2, cols, wt)
        _h_run(hn, y2, x2, x3, cols, wt)
        _v_run(vn, x2, min(y1, y2), max(y1, y2), cols, wt)
        return
    # T: sorted by (row, col)
    idx = np.argsort(rr * 1000003 + cc)
    y1, x1 = rr[idx[0]], cc[idx[0]]
    y2, x2 = rr[idx[1]], cc[idx[1]]
    y3, x3 = rr[idx[2]], cc[idx[2]]
    _h_run(hn, y2, min(x1, min(x2, x3)), max(x1, max(x2, x3)), cols, wt)
    _v_run(vn, x1, min(y1, y2), max(y1, y2), cols, wt)
    _v_run(vn, x3, min(y2, y3), max(y2, y3), cols, wt)


@njit(cache=True)
def _route_net(k, sign, hn, vn, stamp, stamp_id, rbuf, cbuf, x, y, orient, pin_mod, pin_dx, pin_dy, net_ptr,
               net_pins, net_route_weight, gw, gh, cols, rows):
    n = 0
    for j in range(net_ptr[k], net_ptr[k + 1]):
        px, py = pin_xy(net_pins[j], x, y, orient, pin_mod, pin_dx, pin_dy)
        r = _cell_of(py, gh, rows)
        c = _cell_of(px, gw, cols)
        cell = r * cols + c
        if stamp[cell] != stamp_id:
            stamp[cell] = stamp_id
            rbuf[n] = r
            cbuf[n] = c
            n += 1
    wt = sign * net_route_weight[k]
    if n == 2:
        _two_cells(hn, vn, rbuf[0], cbuf[0], rbuf[1], cbuf[1], cols, wt)
    elif n == 3:
        _three_cells(hn, vn, rbuf[:3].copy(), cbuf[:3].copy(), cols, wt)
    elif n > 3:
        for i in range(1, n):
            _two_cells(hn, vn, rbuf[0], cbuf[0], rbuf[i], cbuf[i], cols, wt)


@njit(cache=True)
def _extent(m, x, y, w, h, orient, gw, gh, cols, rows):
    """Module m's rectangle and the grid cells it spans, clamped to the grid as plc_client clamps them
    (ur_r = -1: entirely below or left of the canvas, skipped)."""
    mw, mh = oriented_size(m, w, h, orient)
    x0 = x[m] - mw / 2
    x1 = x[m] + mw / 2
    y0 = y[m] - mh / 2
    y1 = y[m] + mh / 2
    ur_r = int(np.floor(y1 / gh))
    ur_c = int(np.floor(x1 / gw))
    if ur_r < 0 or ur_c < 0:
        return x0, x1, y0, y1, 0, 0, -1, -1
    bl_r = max(int(np.floor(y0 / gh)), 0)
    bl_c = max(int(np.floor(x0 / gw)), 0)
    return x0, x1, y0, y1, bl_r, bl_c, min(ur_r, rows - 1), min(ur_c, cols - 1)


@njit(cache=True)
def _footprint(m, sign, grid, x, y, w, h, orient, gw, gh, cols, rows):
    """Add (sign=1) or remove (-1) module m's covered area to the density grid."""
    x0, x1, y0, y1, bl_r, bl_c, ur_r, ur_c = _extent(m, x, y, w, h, orient, gw, gh, cols, rows)
    if ur_r < 0:
        return
    for r in range(bl_r, ur_r + 1):
        yd = min(y1, (r + 1) * gh) - max(y0, r * gh)
        if yd < 0:
            continue
        for c in range(bl_c, ur_c + 1):
            xd = min(x1, (c + 1) * gw) - max(x0, c * gw)
            if xd < 0:
                continue
            grid[r * cols + c] += sign * xd * yd


@njit(cache=True)
def _macro_blockage(m, sign, hm, vm, x, y, w, h, orient, gw, gh, cols, rows, halloc, valloc):
    """Add (sign=1) or remove (-1) the routing tracks hard macro m blocks (plc_client's macro congestion)."""
    x0, x1, y0, y1, bl_r, bl_c, ur_r, ur_c = _extent(m, x, y, w, h, orient, gw, gh, cols, rows)
    if ur_r < 0:
        return
    part_v = False
    part_h = False
    for r in range(bl_r, ur_r + 1):
        yd = min(y1, (r + 1) * gh) - max(y0, r * gh)
        for c in range(bl_c, ur_c + 1):
            xd = min(x1, (c + 1) * gw) - max(x0, c * gw)
            if not (xd > 0 and yd > 0):
                xe = 0.0
                ye = 0.0
            else:
                xe = xd
                ye = yd
            if ur_r != bl_r and (r == bl_r or r == ur_r) and abs(ye - gh) > 1e-5:
                part_v = True
            if ur_c != bl_c and (c == bl_c or c == ur_c) and abs(xe - gw) > 1e-5:
                part_h = True
            vm[r * cols + c] += sign * xe * valloc
            hm[r * cols + c] += sign * ye * halloc
    if part_v:
        r = ur_r
        yd = min(y1, (r + 1) * gh) - max(y0, r * gh)
        for c in range(bl_c, ur_c + 1):
            xd = min(x1, (c + 1) * gw) - max(x0, c * gw)
            if xd > 0 and yd > 0:
                vm[r * cols + c] -= sign * xd * valloc
    if part_h:
        c = ur_c
        xd = min(x1, (c + 1) * gw) - max(x0, c * gw)
        for r in range(bl_r, ur_r + 1):
            yd = min(y1, (r + 1) * gh) - max(y0, r * gh)
            if xd > 0 and yd > 0:
                hm[r * cols + c] -= sign * yd * halloc


@njit(cache=True)
def _full(x, y, w, h, orient, kind, pin_mod, pin_dx, pin_dy, net_ptr, net_pins, net_weight, net_route_weight,
          grid, hn, vn, hm, vm, stamp, rbuf, cbuf, gw, gh, cols, rows, halloc, valloc):
    grid[:] = 0.0
    hn[:] = 0.0
    vn[:] = 0.0
    hm[:] = 0.0
    vm[:] = 0.0
    wl = 0.0
    nnets = len(net_ptr) - 1
    for k in range(nnets):
        wl += _net_hpwl(k, x, y, orient, pin_mod, pin_dx, pin_dy, net_ptr, net_pins, net_weight)
        stamp[-1] += 1
        _route_net(k, 1.0, hn, vn, stamp, stamp[-1], rbuf, cbuf, x, y, orient, pin_mod, pin_dx, pin_dy,
                   net_ptr, net_pins, net_route_weight, gw, gh, cols, rows)
    for m in range(len(x)):
        if kind[m] == 1 or kind[m] == 2:  # density: hard and soft macros only (plc_client counts no std cells)
            _footprint(m, 1.0, grid, x, y, w, h, orient, gw, gh, cols, rows)
        if kind[m] == 1:
            _macro_blockage(m, 1.0, hm, vm, x, y, w, h, orient, gw, gh, cols, rows, halloc, valloc)
    return wl


@njit(cache=True)
def _update(m, sign, wl, x, y, w, h, orient, kind, pin_mod, pin_dx, pin_dy, net_ptr, net_pins, net_weight,
            net_route_weight, mod_net_ptr, mod_nets, grid, hn, vn, hm, vm, stamp, rbuf, cbuf, gw, gh, cols, rows,
            halloc, valloc):
    """Remove (sign=-1) or add (+1) everything module m contributes; returns the new HPWL sum."""
    for j in range(mod_net_ptr[m], mod_net_ptr[m + 1]):
        k = mod_nets[j]
        wl += sign * _net_hpwl(k, x, y, orient, pin_mod, pin_dx, pin_dy, net_ptr, net_pins, net_weight)
        stamp[-1] += 1
        _route_net(k, sign, hn, vn, stamp, stamp[-1], rbuf, cbuf, x, y, orient, pin_mod, pin_dx, pin_dy,
                   net_ptr, net_pins, net_route_weight, gw, gh, cols, rows)
    if kind[m] == 1 or kind[m] == 2:
        _footprint(m, sign, grid, x, y, w, h, orient, gw, gh, cols, rows)
    if kind[m] == 1:
        _macro_blockage(m, sign, hm, vm, x, y, w, h, orient, gw, gh, cols, rows, halloc, valloc)
    return wl


@njit(cache=True)
def _move(m, nx, ny, no, wl, x, y, w, h, orient, kind, pin_mod, pin_dx, pin_dy, net_ptr, net_pins, net_weight,
          net_route_weight, mod_net_ptr, mod_nets, grid, hn, vn, hm, vm, stamp, rbuf, cbuf, gw, gh, cols, rows,
          halloc, valloc):
    wl = _update(m, -1.0, wl, x, y, w, h, orient, kind, pin_mod, pin_dx, pin_dy, net_ptr, net_pins, net_weight,
                 net_route_weight, mod_net_ptr, mod_nets, grid, hn, vn, hm, vm, stamp, rbuf, cbuf, gw, gh, cols,
                 rows, halloc, valloc)
    x[m] = nx
    y[m] = ny
    orient[m] = no
    return _update(m, 1.0, wl, x, y, w, h, orient, kind, pin_mod, pin_dx, pin_dy, net_ptr, net_pins, net_weight,
                   net_route_weight, mod_net_ptr, mod_nets, grid, hn, vn, hm, vm, stamp, rbuf, cbuf, gw, gh, cols,
                   rows, halloc, valloc)


@njit(cache=True)
def _top_mean(a, frac, small_nonzero):
    n = len(a)
    if small_nonzero and n < 10:
        s = 0.0
        c = 0
        for v in a:
            if v != 0.0:
                s += v
                c += 1
        return s / c if c else 0.0
    k = int(np.floor(n * frac))
    if k == 0:
        return a.max()
    b = np.sort(a)
    return b[n - k:].sum() / k


@njit(cache=True)
def _smooth(vn, hn, cols, rows, sr):
    vs = np.zeros_like(vn)
    hs = np.zeros_like(hn)
    for r in range(rows):
        for c in range(cols):
            lo = max(0, c - sr)
            hi = min(cols - 1, c + sr)
            val = vn[r * cols + c] / (hi - lo + 1)
            for q in range(lo, hi + 1):
                vs[r * cols + q] += val
    for r in range(rows):
        for c in range(cols):
            lo = max(0, r - sr)
            hi = min(rows - 1, r + sr)
            val = hn[r * cols + c] / (hi - lo + 1)
            for q in range(lo, hi + 1):
                hs[q * cols + c] += val
    return vs, hs


@njit(cache=True)
def _components(wl, norm, grid, hn, vn, hm, vm, gw, gh, cols, rows, hroutes, vroutes, sr):
    wirelength = wl / norm if norm > 0 else 0.0
    density = 0.5 * _top_mean(grid / (gw * gh), 0.1, True)
    vcap = gw * vroutes
    hcap = gh * hroutes
    if sr > 0:
        vs, hs = _smooth(vn / vcap, hn / hcap, cols, rows, sr)
    else:
        vs = vn / vcap
        hs = hn / hcap
    both = np.concatenate((vs + vm / vcap, hs + hm / hcap))
    congestion = _top_mean(both, 0.05, False)
    return wirelength, density, congestion


class ProxyCost:
    """The proxy cost of a ``ChipProblem``'s current placement, kept up to date move by move.

    ``evaluate()`` recomputes everything; ``move(m, x, y, orient)`` moves module ``m`` and updates only
    what it touches (its nets' wirelength and routes, its density footprint and macro blockage), so a
    placer can try a move and undo it with another ``move``. ``report()`` reads the components off the
    state. Float drift from many updates is removed by calling ``evaluate()`` now and then.
    """

    def __init__(self, problem: ChipProblem, weights: tuple[float, float, float] = DEFAULT_WEIGHTS) -> None:
        self.p = problem
        self.weights = tuple(float(v) for v in weights)
        c = problem.canvas
        self.gw = c.width / c.columns
        self.gh = c.height / c.rows
        n = c.columns * c.rows
        self.grid = np.zeros(n)
        self.hn = np.zeros(n)
        self.vn = np.zeros(n)
        self.hm = np.zeros(n)
        self.vm = np.zeros(n)
        self.stamp = np.zeros(n + 1, dtype=np.int64)
        deg = int(np.max(np.diff(problem.net_ptr))) if len(problem.net_ptr) > 1 else 1
        self.rbuf = np.zeros(deg + 1, dtype=np.int64)
        self.cbuf = np.zeros(deg + 1, dtype=np.int64)
        self.norm = (c.width + c.height) * problem.net_count
        self.wl = 0.0
        self.evaluate()

    def _args(self) -> tuple:
        p = self.p
        return (p.x, p.y, p.w, p.h, p.orient, p.kind, p.pin_mod, p.pin_dx, p.pin_dy, p.net_ptr, p.net_pins,
                p.net_weight, p.net_route_weight)

    def evaluate(self) -> CostReport:
        """Recompute the whole state from the current placement."""
        p, c = self.p, self.p.canvas
        self.wl = _full(p.x, p.y, p.w, p.h, p.orient, p.kind, p.pin_mod, p.pin_dx, p.pin_dy, p.net_ptr, p.net_pins,
                        p.net_weight, p.net_route_weight, self.grid, self.hn, self.vn, self.hm, self.vm, self.stamp,
                        self.rbuf, self.cbuf, self.gw, self.gh, c.columns, c.rows, c.hmacro, c.vmacro)
        return self.report()

    def move(self, m: int, x: float, y: float, orient: int | None = None) -> None:
        """Move module ``m``'s centre to (x, y) (and turn it to ``orient``), updating the state."""
        p, c = self.p, self.p.canvas
        self.wl = _move(m, float(x), float(y), int(p.orient[m] if orient is None else orient), self.wl, p.x, p.y,
                        p.w, p.h, p.orient, p.kind, p.pin_mod, p.pin_dx, p.pin_dy, p.net_ptr, p.net_pins,
                        p.net_weight, p.net_route_weight, p.mod_net_ptr, p.mod_nets, self.grid, self.hn, self.vn,
                        self.hm, self.vm, self.stamp, self.rbuf, self.cbuf, self.gw, self.gh, c.columns, c.rows,
                        c.hmacro, c.vmacro)

    def components(self) -> tuple[float, float, float]:
        c = self.p.canvas
        return _components(self.wl, self.norm, self.grid, self.hn, self.vn, self.hm, self.vm, self.gw, self.gh,
                           c.columns, c.rows, c.hroutes, c.vroutes, int(c.smoothing))

    def proxy(self) -> float:
        wl, den, cong = self.components()
        a, b, g = self.weights
        return a * wl + b * den + g * cong

    def report(self) -> CostReport:
        wl, den, cong = self.components()
        a, b, g = self.weights
        return CostReport(a * wl + b * den + g * cong, float(wl), float(den), float(cong))

    def density_grid(self) -> np.ndarray:
        """Each grid cell's density (rows x columns)."""
        c = self.p.canvas
        return (self.grid / (self.gw * self.gh)).reshape(c.rows, c.columns)

    def congestion_grid(self) -> np.ndarray:
        """Each grid cell's worse of horizontal and vertical congestion (rows x columns)."""
        c = self.p.canvas
        vcap = self.gw * c.vroutes
        hcap = self.gh * c.hroutes
        if c.smoothing > 0:
            vs, hs = _smooth(self.vn / vcap, self.hn / hcap, c.columns, c.rows, int(c.smoothing))
        else:
            vs, hs = self.vn / vcap, self.hn / hcap
        return np.maximum(vs + self.vm / vcap, hs + self.hm / hcap).reshape(c.rows, c.columns)


def proxy_cost(problem: ChipProblem, weights: tuple[float, float, float] = DEFAULT_WEIGHTS) -> CostReport:
    """The proxy cost of ``problem``'s current placement (a one-off ``ProxyCost``)."""
    return ProxyCost(problem, weights).report()


__all__ = ["CostReport", "DEFAULT_WEIGHTS", "ProxyCost", "proxy_cost", "KIND_HARD", "KIND_PORT"]
