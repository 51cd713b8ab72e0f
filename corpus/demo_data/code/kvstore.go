// Package kvstore implements a small thread-safe key-value store
// with optional per-key expiry.
package kvstore

import (
	"errors"
	"sync"
	"time"
)

// ErrNotFound is returned when a key is missing or has expired.
var ErrNotFound = errors.New("kvstore: key not found")

type entry struct {
	value     []byte
	expiresAt time.Time // zero means no expiry
}

// Store is safe for concurrent use by multiple goroutines.
type Store struct {
	mu   sync.RWMutex
	data map[string]entry
	now  func() time.Time
}

// New returns an empty Store.
func New() *Store {
	return &Store{data: make(map[string]entry), now: time.Now}
}

// Set stores value under key. A ttl of zero means the key never expires.
func (s *Store) Set(key string, value []byte, ttl time.Duration) {
	e := entry{value: append([]byte(nil), value...)}
	if ttl > 0 {
		e.expiresAt = s.now().Add(ttl)
	}
	s.mu.Lock()
	s.data[key] = e
	s.mu.Unlock()
}

// Get returns a copy of the value stored under key.
func (s *Store) Get(key string) ([]byte, error) {
	s.mu.RLock()
	e, ok := s.data[key]
	s.mu.RUnlock()
	if !ok || s.expired(e) {
		return nil, ErrNotFound
	}
	return append([]byte(nil), e.value...), nil
}

// Delete removes key and reports whether it was present.
func (s *Store) Delete(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.data[key]
	delete(s.data, key)
	return ok
}

// Purge removes all expired entries and returns how many were removed.
func (s *Store) Purge() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	removed := 0
	for k, e := range s.data {
		if s.expired(e) {
			delete(s.data, k)
			removed++
		}
	}
	return removed
}

// Len returns the number of stored entries, including expired ones
// that have not been purged yet.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.data)
}

func (s *Store) expired(e entry) bool {
	return !e.expiresAt.IsZero() && !s.now().Before(e.expiresAt)
}
