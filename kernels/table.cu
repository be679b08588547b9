// table.cu - the provider's struct pd_kernels: pd_kernels_cuda_module() in the nvcc build,
// pd_kernels_emu() in the emulator build (same source).
#include "pd_kint.h"

#if defined(__CUDACC__)
#define PD_KTABLE pd_kernels_cuda_module
#else
#define PD_KTABLE pd_kernels_emu
#endif

namespace PD_KNS {

static const struct pd_kernels table = {
    "",
    api_device_count,
    api_device_query,
    api_last_error,
    api_init,
    api_shutdown,
    api_mem_info,
    api_dev_alloc,
    api_dev_free,
    api_host_alloc,
    api_host_free,
    api_upload,
    api_download,
    api_copy,
    api_memset,
    api_sync,
    api_graph_begin,
    api_graph_end,
    api_graph_launch,
    api_graph_nodes,
    api_graph_free,
    api_timer_start,
    api_timer_stop,
    api_bandwidth,
    api_rmsnorm,
    api_quant,
    api_embed,
    api_dequant_f16,
    api_dequant_f32,
    api_round_f16,
    api_swiglu,
    api_add,
    api_matvec,
    api_rope_store,
    api_attn_decode,
    api_capture,
    api_probe_scratch_bytes,
    api_probe,
    api_kv_invalidate,
    api_kv_move,
    api_gemm_f16,
    api_gemm_f32,
};

} // namespace PD_KNS

extern "C" const struct pd_kernels *PD_KTABLE(void)
{
    static struct pd_kernels t = PD_KNS::table;
    t.build = PD_KNS::api_build();
    return &t;
}
