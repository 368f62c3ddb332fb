// perf_event_open plumbing for the sock:inet_sock_set_state tracepoint reader.
// Kept free of <linux/perf_event.h> so the kernel's structs do not leak into the Swift module.
#ifndef CSOCKETKIT_PERF_H
#define CSOCKETKIT_PERF_H

#include <stdint.h>
#include <stddef.h>

// One PERF_RECORD_SAMPLE (sample_type RAW|TIME|TID); the raw bytes live in the caller's buffer.
typedef struct CSocketKit_perf_sample {
    int32_t  pid;
    int32_t  tid;
    uint64_t time;        // in the clock given at open (CLOCK_MONOTONIC here)
    uint32_t raw_offset;  // into the caller's raw buffer, 8-byte aligned
    uint32_t raw_size;    // tracepoint record, common_* fields first, may include padding
} CSocketKit_perf_sample;

typedef struct CSocketKit_perf_drain_result {
    size_t   samples;     // entries written to the samples array
    uint64_t lost;        // sum of PERF_RECORD_LOST counts seen in this call
    int      more;        // 1: stopped because a caller buffer was full, call again
    int      was_full;    // 1: the ring had less than 512 bytes free when read (it may have
                          // dropped records the kernel reports only with its next write)
} CSocketKit_perf_drain_result;

// perf_event_open has no glibc wrapper and syscall() is variadic, which Swift cannot call.
// Opens one tracepoint event, disabled, system-wide on `cpu`; fd or -1 with errno.
// poll() wakes every `wakeup_events` samples (each wake-up is an irq_work self-IPI).
// count_lost asks for PERF_FORMAT_LOST (Linux 6.0+; EINVAL before): read() then returns
// CSocketKit_perf_counts with the drops counted at once, not when a PERF_RECORD_LOST fits.
int CSocketKit_perf_open_tracepoint(uint64_t tracepoint_id, int cpu, int clockid, uint32_t wakeup_events,
                                   int count_lost);

// What read() on an event opened with count_lost returns (read_format = PERF_FORMAT_LOST).
typedef struct CSocketKit_perf_counts {
    uint64_t value;       // samples the event produced
    uint64_t lost;        // samples dropped because the ring was full
} CSocketKit_perf_counts;

// PERF_EVENT_IOC_* are _IO() function-like macros and ioctl() is variadic.
int CSocketKit_perf_enable(int fd);
int CSocketKit_perf_disable(int fd);

// The ring's geometry (1 metadata page + 2^n data pages) in one place; NULL with errno on failure.
void *CSocketKit_perf_mmap(int fd, size_t data_pages);
int CSocketKit_perf_munmap(void *ring, size_t data_pages);

// data_head/data_tail need acquire/release ordering against the kernel writer, which Swift
// cannot express on raw mmap'd memory; records may also wrap the ring's end.
// Drains one ring into the caller's buffers and advances data_tail past what was consumed.
CSocketKit_perf_drain_result CSocketKit_perf_drain(void *ring, size_t data_pages,
    CSocketKit_perf_sample *samples, size_t max_samples,
    uint8_t *raw, size_t raw_capacity);

// 1 when the kernel has written past what was consumed (records, or a PERF_RECORD_LOST), else
// 0: two loads, so a caller can skip a drain that would find nothing.
int CSocketKit_perf_has_records(const void *ring);

#endif
