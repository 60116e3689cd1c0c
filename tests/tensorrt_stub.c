/* Test-only stand-ins for libnvinfer, libnvinfer_plugin and libnvonnxparser, so that TensorRT's
   Python bindings (NVIDIA's wheel, downloaded by tests/real_tensorrt.py) can be imported and their
   API read without the real libraries, which cannot be obtained here. These are the only TensorRT
   symbols the bindings import; every one returns NULL/0, so nothing can be built or run: the
   bindings are only introspected, in a subprocess. */
void *createInferBuilder_INTERNAL(void *logger, int version) { return 0; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { return 0; }
void *createInferRuntime_INTERNAL(void *logger, int version) { return 0; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { return 0; }
void *getBuilderPluginRegistry(int capability) { return 0; }
void *getPluginRegistry(void) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
int initLibNvInferPlugins(void *logger, const char *namespace_) { return 0; }
