// CPU_ISSET/CPU_COUNT are macros over glibc's cpu_set_t: Swift cannot import them.
#include "CSocketKit.h"
#include <sched.h>

int CSocketKit_allowed_cpus(int *cpus, int capacity) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    int count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && count < capacity; cpu++) {
        if (CPU_ISSET(cpu, &set)) cpus[count++] = cpu;
    }
    return count;
}
