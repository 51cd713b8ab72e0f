"""Tiny inventory store backed by SQLite.

Run as a script for a short demonstration using an in-memory database.
"""

import sqlite3
from dataclasses import dataclass
from typing import Iterator, Optional

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    sku      TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    quantity INTEGER NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    price    REAL NOT NULL CHECK (price >= 0)
);
"""


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    quantity: int
    price: float

    @property
    def stock_value(self) -> float:
        return round(self.quantity * self.price, 2)


class Inventory:
    def __init__(self, path: str = ":memory:") -> None:
        self.conn = sqlite3.connect(path)
        self.conn.execute(SCHEMA)

    def add(self, sku: str, name: str, price: float, quantity: int = 0) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO items (sku, name, quantity, price) VALUES (?, ?, ?, ?)",
                (sku, name, quantity, price),
            )

    def adjust(self, sku: str, delta: int) -> int:
        """Change stock by ``delta`` and return the new quantity."""
        with self.conn:
            cur = self.conn.execute("UPDATE items SET quantity = quantity + ? WHERE sku = ?", (delta, sku))
            if cur.rowcount == 0:
                raise KeyError(sku)
        item = self.get(sku)
        assert item is not None
        return item.quantity

    def get(self, sku: str) -> Optional[Item]:
        row = self.conn.execute("SELECT sku, name, quantity, price FROM items WHERE sku = ?", (sku,)).fetchone()
        return Item(*row) if row else None

    def low_stock(self, threshold: int = 5) -> Iterator[Item]:
        rows = self.conn.execute(
            "SELECT sku, name, quantity, price FROM items WHERE quantity < ? ORDER BY quantity, sku", (threshold,)
        )
        for row in rows:
            yield Item(*row)

    def total_value(self) -> float:
        (value,) = self.conn.execute("SELECT COALESCE(SUM(quantity * price), 0) FROM items").fetchone()
        return round(value, 2)


if __name__ == "__main__":
    inv = Inventory()
    inv.add("PEN-01", "Ballpoint pen", 1.20, 40)
    inv.add("NTB-A5", "A5 notebook", 3.50, 12)
    inv.add("STP-10", "Stapler", 8.99, 3)
    inv.adjust("NTB-A5", -9)
    for item in inv.low_stock():
        print(f"low stock: {item.name} ({item.quantity} left)")
    print("total stock value:", inv.total_value())
