#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include "CSocketKitWatch.h"

int CSocketKit_perf_set_filter(int fd, const char *filter) { return ioctl(fd, PERF_EVENT_IOC_SET_FILTER, filter); }
