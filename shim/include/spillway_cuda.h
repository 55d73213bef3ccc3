/*
 * spillway_cuda.h: the few CUDA driver, CUDA runtime and NVML declarations the shim and the fake
 * CUDA libraries use. Written from the public API documentation so that the shim builds with gcc
 * alone (no CUDA toolkit); every real symbol is resolved at run time with dlopen/dlsym.
 * Values and layouts match cuda.h / driver_types.h / nvml.h of CUDA 12 and 13.
 */
#ifndef SPILLWAY_CUDA_H
#define SPILLWAY_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- driver API ---- */
typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef unsigned long long CUmemGenericAllocationHandle;
typedef uint64_t cuuint64_t;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUmemPoolHandle_st *CUmemoryPool;

enum {
  CUDA_SUCCESS = 0,
  CUDA_ERROR_INVALID_VALUE = 1,
  CUDA_ERROR_OUT_OF_MEMORY = 2,
  CUDA_ERROR_NOT_INITIALIZED = 3,
  CUDA_ERROR_DEINITIALIZED = 4,
  CUDA_ERROR_NO_DEVICE = 100,
  CUDA_ERROR_INVALID_DEVICE = 101,
  CUDA_ERROR_INVALID_CONTEXT = 201,
  CUDA_ERROR_INVALID_HANDLE = 400,
  CUDA_ERROR_NOT_FOUND = 500,
  CUDA_ERROR_NOT_SUPPORTED = 801,
  CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900,
  CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901,
  CUDA_ERROR_STREAM_CAPTURE_IMPLICIT = 906,
  CUDA_ERROR_UNKNOWN = 999
};

/* cuGetProcAddress flags and status */
#define CU_GET_PROC_ADDRESS_DEFAULT 0
#define CU_GET_PROC_ADDRESS_LEGACY_STREAM (1 << 0)
#define CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM (1 << 1)
typedef enum {
  CU_GET_PROC_ADDRESS_SUCCESS = 0,
  CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND = 1,
  CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT = 2
} CUdriverProcAddressQueryResult;

/* device attributes the shim reads */
#define CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED 102
#define CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID 134

/* cuMemHostAlloc / cuMemHostRegister flags */
#define CU_MEMHOSTALLOC_PORTABLE 0x01
#define CU_MEMHOSTALLOC_DEVICEMAP 0x02
#define CU_MEMHOSTREGISTER_PORTABLE 0x01
#define CU_MEMHOSTREGISTER_DEVICEMAP 0x02

/* virtual memory management */
typedef enum {
  CU_MEM_LOCATION_TYPE_INVALID = 0,
  CU_MEM_LOCATION_TYPE_DEVICE = 1,
  CU_MEM_LOCATION_TYPE_HOST = 2,
  CU_MEM_LOCATION_TYPE_HOST_NUMA = 3,
  CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT = 4,
  CU_MEM_LOCATION_TYPE_MAX = 0x7FFFFFFF
} CUmemLocationType;
typedef enum { CU_MEM_ALLOCATION_TYPE_INVALID = 0, CU_MEM_ALLOCATION_TYPE_PINNED = 1, CU_MEM_ALLOCATION_TYPE_MAX = 0x7FFFFFFF } CUmemAllocationType;
typedef enum {
  CU_MEM_HANDLE_TYPE_NONE = 0,
  CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR = 1,
  CU_MEM_HANDLE_TYPE_FABRIC = 8,
  CU_MEM_HANDLE_TYPE_MAX = 0x7FFFFFFF
} CUmemAllocationHandleType;
typedef enum { CU_MEM_ACCESS_FLAGS_PROT_NONE = 0, CU_MEM_ACCESS_FLAGS_PROT_READ = 1, CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3, CU_MEM_ACCESS_FLAGS_PROT_MAX = 0x7FFFFFFF } CUmemAccess_flags;
typedef enum { CU_MEM_ALLOC_GRANULARITY_MINIMUM = 0, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED = 1 } CUmemAllocationGranularity_flags;

typedef struct {
  CUmemLocationType type;
  int id;
} CUmemLocation;

typedef struct {
  CUmemAllocationType type;
  CUmemAllocationHandleType requestedHandleTypes;
  CUmemLocation location;
  void *win32HandleMetaData;
  struct {
    unsigned char compressionType;
    unsigned char gpuDirectRDMACapable;
    unsigned short usage;
    unsigned char reserved[4];
  } allocFlags;
} CUmemAllocationProp;

typedef struct {
  CUmemLocation location;
  CUmemAccess_flags flags;
} CUmemAccessDesc;

/* managed memory */
#define CU_MEM_ATTACH_GLOBAL 0x1
#define CU_MEM_ATTACH_HOST 0x2
#define CU_DEVICE_CPU ((CUdevice)-1)
typedef enum {
  CU_MEM_ADVISE_SET_READ_MOSTLY = 1,
  CU_MEM_ADVISE_UNSET_READ_MOSTLY = 2,
  CU_MEM_ADVISE_SET_PREFERRED_LOCATION = 3,
  CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION = 4,
  CU_MEM_ADVISE_SET_ACCESSED_BY = 5,
  CU_MEM_ADVISE_UNSET_ACCESSED_BY = 6
} CUmem_advise;

/* ---- runtime API ---- */
typedef int cudaError_t;
typedef CUstream cudaStream_t;
typedef CUmemoryPool cudaMemPool_t;
enum {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorCudartUnloading = 4,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorNotSupported = 801,
  cudaErrorUnknown = 999
};
struct cudaPitchedPtr {
  void *ptr;
  size_t pitch;
  size_t xsize;
  size_t ysize;
};
struct cudaExtent {
  size_t width;
  size_t height;
  size_t depth;
};
typedef enum {
  cudaDriverEntryPointSuccess = 0,
  cudaDriverEntryPointSymbolNotFound = 1,
  cudaDriverEntryPointVersionNotSufficent = 2
} cudaDriverEntryPointQueryResult;

/* ---- NVML ---- */
typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
enum { NVML_SUCCESS = 0, NVML_ERROR_INVALID_ARGUMENT = 2, NVML_ERROR_NOT_SUPPORTED = 3 };
typedef struct {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
} nvmlMemory_t;
typedef struct {
  unsigned int version;
  unsigned long long total;
  unsigned long long reserved;
  unsigned long long free;
  unsigned long long used;
} nvmlMemory_v2_t;
/* NVML_STRUCT_VERSION(Memory, 2) */
#define nvmlMemory_v2 ((unsigned int)(sizeof(nvmlMemory_v2_t) | (2 << 24U)))

/* ---- function types ---- */
typedef CUresult (*cuInit_t)(unsigned int);
typedef CUresult (*cuCtxGetCurrent_t)(CUcontext *);
typedef CUresult (*cuCtxGetDevice_t)(CUdevice *);
typedef CUresult (*cuCtxSynchronize_t)(void);
typedef CUresult (*cuStreamSynchronize_t)(CUstream);
typedef CUresult (*cuCtxPushCurrent_t)(CUcontext);
typedef CUresult (*cuDevicePrimaryCtxGetState_t)(CUdevice, unsigned int *, int *);
typedef CUresult (*cuDevicePrimaryCtxRetain_t)(CUcontext *, CUdevice);
typedef CUresult (*cuDevicePrimaryCtxRelease_t)(CUdevice);
typedef CUresult (*cuCtxPopCurrent_t)(CUcontext *);
typedef enum { CU_STREAM_CAPTURE_STATUS_NONE = 0, CU_STREAM_CAPTURE_STATUS_ACTIVE = 1, CU_STREAM_CAPTURE_STATUS_INVALIDATED = 2 } CUstreamCaptureStatus;
typedef CUresult (*cuStreamIsCapturing_t)(CUstream, CUstreamCaptureStatus *);
typedef CUresult (*cuDeviceGetAttribute_t)(int *, int, CUdevice);
typedef CUresult (*cuDeviceTotalMem_t)(size_t *, CUdevice);
typedef CUresult (*cuMemGetInfo_t)(size_t *, size_t *);
typedef CUresult (*cuMemAlloc_t)(CUdeviceptr *, size_t);
typedef CUresult (*cuMemFree_t)(CUdeviceptr);
typedef CUresult (*cuMemAllocAsync_t)(CUdeviceptr *, size_t, CUstream);
typedef CUresult (*cuMemFreeAsync_t)(CUdeviceptr, CUstream);
typedef CUresult (*cuMemAllocFromPoolAsync_t)(CUdeviceptr *, size_t, CUmemoryPool, CUstream);
typedef CUresult (*cuMemHostAlloc_t)(void **, size_t, unsigned int);
typedef CUresult (*cuMemFreeHost_t)(void *);
typedef CUresult (*cuMemHostGetDevicePointer_t)(CUdeviceptr *, void *, unsigned int);
typedef CUresult (*cuMemHostRegister_t)(void *, size_t, unsigned int);
typedef CUresult (*cuMemHostUnregister_t)(void *);
typedef CUresult (*cuMemAddressReserve_t)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
typedef CUresult (*cuMemAddressFree_t)(CUdeviceptr, size_t);
typedef CUresult (*cuMemCreate_t)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long);
typedef CUresult (*cuMemRelease_t)(CUmemGenericAllocationHandle);
typedef CUresult (*cuMemMap_t)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
typedef CUresult (*cuMemUnmap_t)(CUdeviceptr, size_t);
typedef CUresult (*cuMemSetAccess_t)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
typedef CUresult (*cuMemGetAllocationGranularity_t)(size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags);
typedef CUresult (*cuMemRetainAllocationHandle_t)(CUmemGenericAllocationHandle *, void *);
typedef CUresult (*cuMemExportToShareableHandle_t)(void *, CUmemGenericAllocationHandle, CUmemAllocationHandleType, unsigned long long);
typedef CUresult (*cuMemImportFromShareableHandle_t)(CUmemGenericAllocationHandle *, void *, CUmemAllocationHandleType);
typedef CUresult (*cuMemGetAllocationPropertiesFromHandle_t)(CUmemAllocationProp *, CUmemGenericAllocationHandle);
typedef CUresult (*cuMemAllocManaged_t)(CUdeviceptr *, size_t, unsigned int);
typedef CUresult (*cuMemAdvise_t)(CUdeviceptr, size_t, CUmem_advise, CUdevice);
typedef CUresult (*cuMemAdvise_v2_t)(CUdeviceptr, size_t, CUmem_advise, CUmemLocation);
typedef CUresult (*cuMemAllocPitch_t)(CUdeviceptr *, size_t *, size_t, size_t, unsigned int);
typedef CUresult (*cuGetProcAddress_v1_t)(const char *, void **, int, cuuint64_t);
typedef CUresult (*cuGetProcAddress_v2_t)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);

typedef cudaError_t (*cudaMalloc_t)(void **, size_t);
typedef cudaError_t (*cudaFree_t)(void *);
typedef cudaError_t (*cudaMallocAsync_t)(void **, size_t, cudaStream_t);
typedef cudaError_t (*cudaFreeAsync_t)(void *, cudaStream_t);
typedef cudaError_t (*cudaMallocFromPoolAsync_t)(void **, size_t, cudaMemPool_t, cudaStream_t);
typedef cudaError_t (*cudaMallocManaged_t)(void **, size_t, unsigned int);
typedef cudaError_t (*cudaMallocPitch_t)(void **, size_t *, size_t, size_t);
typedef cudaError_t (*cudaMalloc3D_t)(struct cudaPitchedPtr *, struct cudaExtent);
typedef cudaError_t (*cudaMemGetInfo_t)(size_t *, size_t *);
typedef cudaError_t (*cudaGetDriverEntryPoint_t)(const char *, void **, unsigned long long, cudaDriverEntryPointQueryResult *);
typedef cudaError_t (*cudaGetDriverEntryPointByVersion_t)(const char *, void **, unsigned int, unsigned long long, cudaDriverEntryPointQueryResult *);

typedef nvmlReturn_t (*nvmlDeviceGetMemoryInfo_t)(nvmlDevice_t, nvmlMemory_t *);
typedef nvmlReturn_t (*nvmlDeviceGetMemoryInfo_v2_t)(nvmlDevice_t, nvmlMemory_v2_t *);
typedef nvmlReturn_t (*nvmlDeviceGetIndex_t)(nvmlDevice_t, unsigned int *);

#ifdef __cplusplus
}
#endif
#endif
