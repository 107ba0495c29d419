"""The RL placer's action space and per-position features, in numba.

Action space: the centres of a ``sub`` x ``sub`` lattice inside every grid cell (``sub = 1``: Circuit
Training's grid-cell centres; ``sub = 2``: four positions per cell, as later Circuit Training versions and
follow-up work place on finer grids). Why finer: the proxy cost's density term is the mean of the densest 10%
of grid cells, and a macro centred on a cell centre always covers that cell to its full height; positions
between cell centres let macros straddle cell boundaries (what simulated annealing exploits off the grid).

Features for the macro ``m`` about to be placed, at every position (``position_features``):

- legal: the macro centred there lies inside the canvas and clear of every hard macro placed so far;
- the exact increase of the net-weighted HPWL (in wirelength-cost units: divided by (canvas width + height) x
  net count) over ``m``'s nets, counting the pins of modules whose positions are known (ports, soft macros,
  hard macros placed so far), with ``m``'s pin offsets turned by its orientation;
- the hard-macro density under the footprint (area-weighted mean over the grid cells it covers) and the
  densest cell it would leave (hard macros so far plus this one), and the same area-weighted mean of the
  soft macros' density (clusters move after the hard macros, so this is a softer signal).

Why: the HPWL increase is what a greedy placer would minimise; as an input (and a prior term in the logits) it
gives even an untrained policy a sensible start, and training learns the trade-off with density and routing.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cost import oriented_size, pin_xy
from .legality import fits
from .problem import ChipProblem


def lattice(problem: ChipProblem, sub: int) -> tuple[np.ndarray, np.ndarray]:
    """The candidate centres (x, y), row-major over a (rows x sub) by (columns x sub) lattice."""
    c = problem.canvas
    gw, gh = c.width / c.columns, c.height / c.rows
    xs = (np.arange(c.columns * sub) + 0.5) * gw / sub
    ys = (np.arange(c.rows * sub) + 0.5) * gh / sub
    X, Y = np.meshgrid(xs, ys)
    return X.ravel().copy(), Y.ravel().copy()


@njit(cache=True)
def _cover(grid, x0, x1, y0, y1, gw, gh, cols, rows, sign, other, tau=0.0):
    """Over the grid cells rectangle [x0, x1] x [y0, y1] covers: add ``sign`` x the covered area fraction to
    ``grid`` (sign 0: leave it), and return (the area-weighted mean of ``grid`` under the rectangle, the
    largest grid + coverage of a covered cell, the sum over covered cells of f (2 (grid + other) + f), f the
    covered fraction: the increase of the squared densities of grid + other, and the sum over covered cells of
    max(d + f, tau) - max(d, tau), d = grid + other), all read before the addition."""
    c0 = max(int(np.floor(x0 / gw)), 0)
    c1 = min(int(np.floor(x1 / gw)), cols - 1)
    r0 = max(int(np.floor(y0 / gh)), 0)
    r1 = min(int(np.floor(y1 / gh)), rows - 1)
    s = 0.0
    a = 0.0
    top = 0.0
    sq = 0.0
    hinge = 0.0
    for r in range(r0, r1 + 1):
        oy = min(y1, (r + 1) * gh) - max(y0, r * gh)
        if oy <= 0:
            continue
        for c in range(c0, c1 + 1):
            ox = min(x1, (c + 1) * gw) - max(x0, c * gw)
            if ox > 0:
                f = ox * oy / (gw * gh)
                g = grid[r * cols + c]
                s += f * g
                a += f
                d = g + other[r * cols + c]
                sq += f * (2.0 * d + f)
                hinge += max(d + f, tau) - max(d, tau)
                if g + f > top:
                    top = g + f
                if sign != 0:
                    grid[r * cols + c] = g + sign * f
    return (s / a if a > 0 else 0.0), top, sq, hinge


@njit(cache=True)
def add_footprint(grid, x0, x1, y0, y1, gw, gh, cols, rows, sign):
    """Add (sign 1) the area fraction of rectangle [x0, x1] x [y0, y1] to every grid cell it covers."""
    _cover(grid, x0, x1, y0, y1, gw, gh, cols, rows, sign, grid)


@njit(cache=True)
def position_features(m, X, Y, x, y, w, h, orient, known, placed, n_placed, pin_mod, pin_dx, pin_dy, net_ptr,
                      net_pins, net_weight, mod_net_ptr, mod_nets, hard_grid, soft_grid, gw, gh, cols, rows, cw, ch,
                      eps, wl_norm, legal, dwl, hden, htop, sden):
    """Fill ``legal``, ``dwl`` (HPWL increase / wl_norm), ``hden``, ``htop``, ``sden`` for macro m at every
    candidate centre (X[i], Y[i]); see the module docstring."""
    mw, mh = oriented_size(m, w, h, orient)
    n = len(X)
    for i in range(n):
        cx = X[i]
        cy = Y[i]
        ok = cx - mw / 2 >= -eps and cx + mw / 2 <= cw + eps and cy - mh / 2 >= -eps and cy + mh / 2 <= ch + eps
        if ok:
            for a in range(n_placed):
                j = placed[a]
                jw, jh = oriented_size(j, w, h, orient)
                if abs(cx - x[j]) < (mw + jw) / 2 - eps and abs(cy - y[j]) < (mh + jh) / 2 - eps:
                    ok = False
                    break
        legal[i] = ok
        dwl[i] = 0.0
        hden[i], htop[i], _, _ = _cover(hard_grid, cx - mw / 2, cx + mw / 2, cy - mh / 2, cy + mh / 2, gw, gh,
                                        cols, rows, 0.0, soft_grid)
        sden[i] = _cover(soft_grid, cx - mw / 2, cx + mw / 2, cy - mh / 2, cy + mh / 2, gw, gh, cols, rows, 0.0,
                         soft_grid)[0]
    # wirelength: per net of m, the known pins' bounding box and m's pins' offsets (turned), then every position
    ox0 = x[m]
    oy0 = y[m]
    for t in range(mod_net_ptr[m], mod_net_ptr[m + 1]):
        k = mod_nets[t]
        bx0 = 1e300
        bx1 = -1e300
        by0 = 1e300
        by1 = -1e300
        dx0 = 1e300
        dx1 = -1e300
        dy0 = 1e300
        dy1 = -1e300
        nk = 0
        for j in range(net_ptr[k], net_ptr[k + 1]):
            pn = net_pins[j]
            md = pin_mod[pn]
            px, py = pin_xy(pn, x, y, orient, pin_mod, pin_dx, pin_dy)
            if md == m:
                dx0 = min(dx0, px - ox0)
                dx1 = max(dx1, px - ox0)
                dy0 = min(dy0, py - oy0)
                dy1 = max(dy1, py - oy0)
            elif known[md]:
                bx0 = min(bx0, px)
                bx1 = max(bx1, px)
                by0 = min(by0, py)
                by1 = max(by1, py)
                nk += 1
        if nk == 0:
            continue
        wt = net_weight[k] / wl_norm
        base = (bx1 - bx0) + (by1 - by0)
        for i in range(n):
            ux = max(bx1, X[i] + dx1) - min(bx0, X[i] + dx0)
            uy = max(by1, Y[i] + dy1) - min(by0, Y[i] + dy0)
            dwl[i] += wt * (ux + uy - base)


@njit(cache=True)
def _standardize(v, legal, out):
    s = 0.0
    n = 0
    for i in range(len(v)):
        if legal[i]:
            s += v[i]
            n += 1
    if n == 0:
        out[:] = 0.0
        return
    mean = s / n
    q = 0.0
    for i in range(len(v)):
        if legal[i]:
            q += (v[i] - mean) ** 2
    sd = np.sqrt(q / n)
    for i in range(len(v)):
        out[i] = (v[i] - mean) / sd if sd > 1e-12 else 0.0


@njit(cache=True)
def assemble_features(f, X, Y, cw, ch, legal, dwl, hden, htop, sden, static, frac, zbuf):
    """The RL policy's per-position inputs (rl.Episode.features lists them) into ``f`` [positions, 11]."""
    for i in range(len(X)):
        f[i, 0] = X[i] / cw
        f[i, 1] = Y[i] / ch
        f[i, 2] = hden[i]
        f[i, 3] = htop[i]
        f[i, 4] = sden[i]
        f[i, 8] = static[i, 0]
        f[i, 9] = static[i, 1]
        f[i, 10] = frac
    _standardize(dwl, legal, zbuf)
    f[:, 5] = zbuf
    _standardize(sden, legal, zbuf)
    f[:, 6] = zbuf
    _standardize(hden, legal, zbuf)
    f[:, 7] = zbuf


@njit(cache=True)
def footprint_density_increase(X, Y, mw, mh, hard_grid, soft_grid, gw, gh, cols, rows, out):
    """For a macro of size mw x mh centred at each (X[i], Y[i]): the increase of the sum of squared grid-cell
    densities (hard + soft macros) it would cause, sum over covered cells of f (2 d + f) (f: the share of the
    cell it covers, d: the cell's density before), into ``out``. Why squares: the proxy's density term is the
    mean of the densest cells, and the sum of squares is its smooth stand-in: it is least where the macro covers
    emptier cells and spreads its area over more of them (straddling cell boundaries) instead of filling one."""
    for i in range(len(X)):
        out[i] = _cover(hard_grid, X[i] - mw / 2, X[i] + mw / 2, Y[i] - mh / 2, Y[i] + mh / 2, gw, gh, cols, rows, 0.0,
                        soft_grid)[2]


@njit(cache=True)
def legal_positions(m, X, Y, offx, offy, cols_l, gwl, ghl, x, y, w, h, orient, placed, n_placed, cw, ch, eps, legal):
    """``legal[i]``: some offset (offx[q], offy[q]) puts macro m centred at (X[i] + offx[q], Y[i] + offy[q])
    inside the canvas and clear of every hard macro placed so far (the test ``position_features`` makes, at
    every offset). ``X``/``Y`` is the row-major lattice of ``lattice`` (``cols_l`` columns, spacing gwl x ghl).
    Why not position by position: each placed macro forbids a rectangle of centres, so it is stamped onto the
    lattice (a few dozen positions) instead of being tested against all of them: O(placed x offsets x stamp)
    rather than O(positions x placed)."""
    n = len(X)
    K = len(offx)
    rows_l = n // cols_l
    mw, mh = oriented_size(m, w, h, orient)
    block = np.zeros((n, K), dtype=np.bool_)
    for a in range(n_placed):
        j = placed[a]
        jw, jh = oriented_size(j, w, h, orient)
        hx = (mw + jw) / 2 - eps
        hy = (mh + jh) / 2 - eps
        for q in range(K):
            c0 = max(int(np.floor((x[j] - offx[q] - hx) / gwl - 0.5)), 0)
            c1 = min(int(np.ceil((x[j] - offx[q] + hx) / gwl - 0.5)), cols_l - 1)
            r0 = max(int(np.floor((y[j] - offy[q] - hy) / ghl - 0.5)), 0)
            r1 = min(int(np.ceil((y[j] - offy[q] + hy) / ghl - 0.5)), rows_l - 1)
            for r in range(r0, r1 + 1):
                for c in range(c0, c1 + 1):
                    i = r * cols_l + c
                    if abs(X[i] + offx[q] - x[j]) < hx and abs(Y[i] + offy[q] - y[j]) < hy:
                        block[i, q] = True
    for i in range(n):
        ok = False
        for q in range(K):
            if block[i, q]:
                continue
            cx = X[i] + offx[q]
            cy = Y[i] + offy[q]
            if cx - mw / 2 >= -eps and cx + mw / 2 <= cw + eps and cy - mh / 2 >= -eps and cy + mh / 2 <= ch + eps:
                ok = True
                break
        legal[i] = ok


@njit(cache=True)
def footprint_top_increase(X, Y, mw, mh, hard_grid, soft_grid, gw, gh, cols, rows, tau, out):
    """For a macro of size mw x mh centred at each (X[i], Y[i]): the sum over the grid cells it covers of
    max(d + f, tau) - max(d, tau) (d: the cell's hard + soft macro density before, f: the share of the cell the
    macro covers), into ``out``. With ``tau`` the density of the k-th densest cell (k = 10% of the cells), this
    is, to first order, the increase of the sum of the k densest cells' densities: the proxy's density term
    times k. Why (``rl.Episode.refine_position``): the sum of squared densities alone, its smooth stand-in,
    pushes each macro as far from its placed neighbours as its cell allows, which leaves macro-wide holes that
    later macros fill edge to edge (cells between them ~0.96 full); the proxy only counts the densest cells, so
    a macro may sit close to its neighbours as long as no cell it covers rises into the densest 10%."""
    for i in range(len(X)):
        out[i] = _cover(hard_grid, X[i] - mw / 2, X[i] + mw / 2, Y[i] - mh / 2, Y[i] + mh / 2, gw, gh, cols, rows, 0.0,
                        soft_grid, tau)[3]


@njit(cache=True)
def offsets_fit(m, X, Y, x, y, w, h, hard, cw, ch, eps, out):
    """``out[i]``: macro m centred at (X[i], Y[i]) lies inside the canvas and clear of every hard macro in
    ``hard`` other than m itself, all at their current positions (``legality.fits``, SA's test, at each
    position; ``w``, ``h`` as oriented): ``rl.Episode.sweep_offsets`` re-decides one macro's offset with all
    the others placed."""
    for i in range(len(X)):
        out[i] = fits(m, X[i], Y[i], w[m], h[m], x, y, w, h, hard, -1, cw, ch, eps)
