"""Minimal pure-Python matrix helpers, useful for teaching and tests."""

from typing import List, Sequence

Matrix = List[List[float]]


def shape(m: Sequence[Sequence[float]]) -> tuple:
    rows = len(m)
    cols = len(m[0]) if rows else 0
    if any(len(row) != cols for row in m):
        raise ValueError("ragged matrix")
    return rows, cols


def transpose(m: Sequence[Sequence[float]]) -> Matrix:
    return [list(col) for col in zip(*m)]


def matmul(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> Matrix:
    """Multiply an (n x k) matrix by a (k x m) matrix."""
    n, k = shape(a)
    k2, m = shape(b)
    if k != k2:
        raise ValueError(f"cannot multiply {n}x{k} by {k2}x{m}")
    bt = transpose(b)
    return [[sum(x * y for x, y in zip(row, col)) for col in bt] for row in a]


def identity(n: int) -> Matrix:
    return [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]


def determinant(m: Sequence[Sequence[float]]) -> float:
    """Determinant by Gaussian elimination with partial pivoting."""
    n, cols = shape(m)
    if n != cols:
        raise ValueError("determinant requires a square matrix")
    a = [list(map(float, row)) for row in m]
    det = 1.0
    for i in range(n):
        pivot = max(range(i, n), key=lambda r: abs(a[r][i]))
        if abs(a[pivot][i]) < 1e-12:
            return 0.0
        if pivot != i:
            a[i], a[pivot] = a[pivot], a[i]
            det = -det
        det *= a[i][i]
        for r in range(i + 1, n):
            factor = a[r][i] / a[i][i]
            for c in range(i, n):
                a[r][c] -= factor * a[i][c]
    return det


if __name__ == "__main__":
    a = [[1, 2], [3, 4]]
    b = [[5, 6], [7, 8]]
    assert matmul(a, b) == [[19, 22], [43, 50]]
    assert matmul(a, identity(2)) == [[1.0, 2.0], [3.0, 4.0]]
    assert abs(determinant(a) - (-2.0)) < 1e-9
    assert transpose([[1, 2, 3]]) == [[1], [2], [3]]
    print("all matrix checks passed")
