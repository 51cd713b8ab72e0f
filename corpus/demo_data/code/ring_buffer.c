/*
 * ring_buffer.c - fixed-size circular buffer of integers.
 *
 * Build and run the self-test:
 *     cc -std=c99 -Wall -Wextra -o ring_buffer ring_buffer.c && ./ring_buffer
 */
#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    int *data;
    size_t capacity;
    size_t head;   /* index of the oldest element */
    size_t count;  /* number of stored elements */
} ring_buffer;

/* Allocate a buffer able to hold `capacity` ints. Returns NULL on failure. */
ring_buffer *rb_create(size_t capacity)
{
    if (capacity == 0)
        return NULL;
    ring_buffer *rb = malloc(sizeof *rb);
    if (!rb)
        return NULL;
    rb->data = malloc(capacity * sizeof *rb->data);
    if (!rb->data) {
        free(rb);
        return NULL;
    }
    rb->capacity = capacity;
    rb->head = 0;
    rb->count = 0;
    return rb;
}

void rb_destroy(ring_buffer *rb)
{
    if (rb) {
        free(rb->data);
        free(rb);
    }
}

/* Append a value, overwriting the oldest one when the buffer is full. */
void rb_push(ring_buffer *rb, int value)
{
    size_t tail = (rb->head + rb->count) % rb->capacity;
    rb->data[tail] = value;
    if (rb->count < rb->capacity)
        rb->count++;
    else
        rb->head = (rb->head + 1) % rb->capacity;
}

/* Remove the oldest value into *out. Returns false if the buffer is empty. */
bool rb_pop(ring_buffer *rb, int *out)
{
    if (rb->count == 0)
        return false;
    *out = rb->data[rb->head];
    rb->head = (rb->head + 1) % rb->capacity;
    rb->count--;
    return true;
}

double rb_average(const ring_buffer *rb)
{
    if (rb->count == 0)
        return 0.0;
    long long sum = 0;
    for (size_t i = 0; i < rb->count; i++)
        sum += rb->data[(rb->head + i) % rb->capacity];
    return (double)sum / (double)rb->count;
}

int main(void)
{
    ring_buffer *rb = rb_create(3);
    assert(rb != NULL);

    for (int i = 1; i <= 5; i++)
        rb_push(rb, i * 10);          /* keeps 30, 40, 50 */

    assert(rb->count == 3);
    printf("average of last 3: %.1f\n", rb_average(rb));  /* 40.0 */

    int v;
    while (rb_pop(rb, &v))
        printf("popped %d\n", v);
    assert(!rb_pop(rb, &v));

    rb_destroy(rb);
    return EXIT_SUCCESS;
}
