//! A generic stack with a fixed maximum capacity.

use std::fmt;

#[derive(Debug, PartialEq, Eq)]
pub enum StackError {
    Full(usize),
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::Full(cap) => write!(f, "stack is full (capacity {})", cap),
        }
    }
}

impl std::error::Error for StackError {}

#[derive(Debug)]
pub struct BoundedStack<T> {
    items: Vec<T>,
    capacity: usize,
}

impl<T> BoundedStack<T> {
    /// Create an empty stack that can hold at most `capacity` items.
    pub fn new(capacity: usize) -> Self {
        BoundedStack { items: Vec::with_capacity(capacity), capacity }
    }

    pub fn push(&mut self, value: T) -> Result<(), StackError> {
        if self.items.len() == self.capacity {
            return Err(StackError::Full(self.capacity));
        }
        self.items.push(value);
        Ok(())
    }

    pub fn pop(&mut self) -> Option<T> {
        self.items.pop()
    }

    pub fn peek(&self) -> Option<&T> {
        self.items.last()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.items.len() == self.capacity
    }
}

fn main() {
    let mut stack = BoundedStack::new(2);
    stack.push("first").unwrap();
    stack.push("second").unwrap();
    if let Err(e) = stack.push("third") {
        println!("error: {}", e);
    }
    while let Some(item) = stack.pop() {
        println!("popped {}", item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_pop_order_is_lifo() {
        let mut s = BoundedStack::new(3);
        for i in 1..=3 {
            s.push(i).unwrap();
        }
        assert!(s.is_full());
        assert_eq!(s.peek(), Some(&3));
        assert_eq!(s.pop(), Some(3));
        assert_eq!(s.pop(), Some(2));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn push_fails_when_full() {
        let mut s = BoundedStack::new(1);
        s.push('a').unwrap();
        assert_eq!(s.push('b'), Err(StackError::Full(1)));
    }
}
