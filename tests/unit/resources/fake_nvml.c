/*
 * fake_nvml.c - the four NVML entry points node/resources.c uses, with
 * three devices: 8 GiB, 16 GiB, and one whose memory query fails (a device
 * in a bad state, which must not be offered).
 */
#include <stdint.h>

struct fake_memory {
    unsigned long long total, free, used;
};

int nvmlInit_v2(void);
int nvmlDeviceGetCount_v2(unsigned int *count);
int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device);
int nvmlDeviceGetMemoryInfo(void *device, struct fake_memory *memory);

int nvmlInit_v2(void)
{
    return 0;
}

int nvmlDeviceGetCount_v2(unsigned int *count)
{
    *count = 3;
    return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device)
{
    if (index >= 3)
        return 2; /* NVML_ERROR_INVALID_ARGUMENT */
    *device = (void *)(uintptr_t)(index + 1);
    return 0;
}

int nvmlDeviceGetMemoryInfo(void *device, struct fake_memory *memory)
{
    uintptr_t i = (uintptr_t)device - 1;
    if (i == 2)
        return 15; /* NVML_ERROR_GPU_IS_LOST */
    memory->total = (8ull << 30) * (i + 1);
    memory->free = memory->total / 2;
    memory->used = memory->total - memory->free;
    return 0;
}
