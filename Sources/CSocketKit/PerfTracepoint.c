#include "CSocketKitPerf.h"
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/perf_event.h>

_Static_assert(sizeof(CSocketKit_perf_counts) == 16, "read_format PERF_FORMAT_LOST layout");

int CSocketKit_perf_open_tracepoint(uint64_t tracepoint_id, int cpu, int clockid, uint32_t wakeup_events,
                                   int count_lost) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_TRACEPOINT;
    attr.config = tracepoint_id;
    attr.sample_period = 1;
    attr.sample_type = PERF_SAMPLE_RAW | PERF_SAMPLE_TIME | PERF_SAMPLE_TID;
    attr.disabled = 1;          // enabled only once the ring is mapped, so nothing is dropped
    attr.use_clockid = 1;
    attr.clockid = clockid;
    attr.wakeup_events = wakeup_events;
    if (count_lost) attr.read_format = 1U << 4;  // PERF_FORMAT_LOST: an enum older headers lack
    return (int)syscall(SYS_perf_event_open, &attr, -1 /* any pid */, cpu, -1, PERF_FLAG_FD_CLOEXEC);
}

int CSocketKit_perf_enable(int fd) { return ioctl(fd, PERF_EVENT_IOC_ENABLE, 0); }
int CSocketKit_perf_disable(int fd) { return ioctl(fd, PERF_EVENT_IOC_DISABLE, 0); }

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

void *CSocketKit_perf_mmap(int fd, size_t data_pages) {
    if (data_pages == 0 || (data_pages & (data_pages - 1)) != 0) { errno = EINVAL; return NULL; }
    void *ring = mmap(NULL, (1 + data_pages) * page_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return ring == MAP_FAILED ? NULL : ring;
}

int CSocketKit_perf_munmap(void *ring, size_t data_pages) {
    return munmap(ring, (1 + data_pages) * page_size());
}

// Copies len bytes starting at ring offset `pos`, which may wrap past the end of the data area.
// A record rarely wraps: the common case is one memcpy of a length the caller often knows at
// compile time (the 8-byte header, the 20 fixed bytes), which the compiler then inlines; the
// two-part copy written for both cases made three memcpy calls a record (callgrind).
static inline void ring_copy(void *dst, const uint8_t *data, uint64_t size, uint64_t pos, size_t len) {
    size_t start = (size_t)(pos & (size - 1));
    if (__builtin_expect(start + len <= size, 1)) {
        memcpy(dst, data + start, len);
        return;
    }
    size_t first = (size_t)(size - start);
    memcpy(dst, data + start, first);
    memcpy((uint8_t *)dst + first, data, len - first);
}

CSocketKit_perf_drain_result CSocketKit_perf_drain(void *ring, size_t data_pages,
    CSocketKit_perf_sample *samples, size_t max_samples,
    uint8_t *raw, size_t raw_capacity) {
    CSocketKit_perf_drain_result result = {0, 0, 0, 0};
    struct perf_event_mmap_page *meta = ring;
    // data_offset/data_size exist since Linux 4.1; older kernels leave them zero.
    uint64_t offset = meta->data_offset ? meta->data_offset : page_size();
    uint64_t size = meta->data_size ? meta->data_size : data_pages * page_size();
    const uint8_t *data = (const uint8_t *)ring + offset;

    uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
    uint64_t tail = meta->data_tail;
    size_t raw_used = 0;
    result.was_full = head - tail + 512 > size;

    while (tail < head) {
        struct perf_event_header header;
        ring_copy(&header, data, size, tail, sizeof header);
        if (header.size < sizeof header || header.size > head - tail) break;  // torn; never expected

        if (header.type == PERF_RECORD_SAMPLE) {
            // Layout for RAW|TIME|TID: u32 pid, tid; u64 time; u32 size; u8 data[size].
            struct { uint32_t pid, tid; uint64_t time; uint32_t size; } __attribute__((packed)) fixed;
            ring_copy(&fixed, data, size, tail + sizeof header, sizeof fixed);
            if (fixed.size > header.size - sizeof header - sizeof fixed) break;
            size_t aligned = (raw_used + 7) & ~(size_t)7;
            if (result.samples == max_samples || aligned + fixed.size > raw_capacity) {
                result.more = 1;
                break;
            }
            ring_copy(raw + aligned, data, size, tail + sizeof header + sizeof fixed, fixed.size);
            samples[result.samples++] = (CSocketKit_perf_sample){
                (int32_t)fixed.pid, (int32_t)fixed.tid, fixed.time, (uint32_t)aligned, fixed.size};
            raw_used = aligned + fixed.size;
        } else if (header.type == PERF_RECORD_LOST) {
            struct { uint64_t id, lost; } body;
            ring_copy(&body, data, size, tail + sizeof header, sizeof body);
            result.lost += body.lost;
        }
        tail += header.size;
    }
    // Release: our reads of the records must complete before the kernel may overwrite them.
    __atomic_store_n(&meta->data_tail, tail, __ATOMIC_RELEASE);
    return result;
}

int CSocketKit_perf_has_records(const void *ring) {
    const struct perf_event_mmap_page *meta = ring;
    return __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE) != __atomic_load_n(&meta->data_tail, __ATOMIC_ACQUIRE);
}
