/*
 * ignitia_sync.sansio._framing: the per-message frame work in C.
 *
 * The twin of ignitia_sync/sansio/framing_python.py, function for function and byte for
 * byte (tests/sansio/test_framing_native.py feeds both the same input): parse() reads the
 * common frames of a buffer into Text, Binary, Ping and Pong messages, frame(),
 * text_frame() and masked_frame() build frames, unmask() XORs a payload with a masking key.
 * Pure computation: no I/O, no state but the message classes it builds.
 *
 * Messages are built without their dataclass __init__ (which goes through
 * object.__setattr__, a frozen dataclass): the object is allocated and its one slot,
 * `data`, is set at the offset its member descriptor names. Module init checks that each
 * class still has exactly that one field and no __post_init__, and fails the import
 * otherwise, so ignitia_sync.sansio.framing falls back to the Python twin.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    PyTypeObject *type;
    Py_ssize_t offset; /* of the `data` slot */
} MessageKind;

enum { TEXT, BINARY, PING, PONG, KINDS };
static const char *const kind_names[KINDS] = {"Text", "Binary", "Ping", "Pong"};
static MessageKind kinds[KINDS];

/* ---------------------------------------------------------------- masking */

static void
xor_copy(uint8_t *dst, const uint8_t *src, Py_ssize_t n, const uint8_t *key)
{
    uint32_t k4;
    memcpy(&k4, key, 4);
    uint64_t k8 = ((uint64_t)k4 << 32) | k4;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) { /* the compiler vectorises this at -O3 */
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= k8;
        memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ key[i & 3];
}

static int
get_key(PyObject *obj, Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0)
        return -1;
    if (view->len != 4) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
        return -1;
    }
    return 0;
}

/* A payload's buffer and a 4-byte key's; on failure neither is held. */
static int
get_payload_and_key(PyObject *payload_object, PyObject *key_object, Py_buffer *payload, Py_buffer *key)
{
    if (PyObject_GetBuffer(payload_object, payload, PyBUF_SIMPLE) < 0)
        return -1;
    if (get_key(key_object, key) < 0) {
        PyBuffer_Release(payload);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(unmask_doc,
"unmask(data, mask) -> bytes\n\n"
"XOR data with the repeated 4-byte mask (RFC 6455 section 5.3).");

static PyObject *
unmask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "unmask(data, mask) takes 2 arguments");
        return NULL;
    }
    Py_buffer data, key;
    if (get_payload_and_key(args[0], args[1], &data, &key) < 0)
        return NULL;
    PyObject *result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result != NULL)
        xor_copy((uint8_t *)PyBytes_AS_STRING(result), data.buf, data.len, key.buf);
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    return result;
}

/* ---------------------------------------------------------------- building frames */

/* The header of a frame whose payload is `length` bytes; returns its size (2, 4 or 10). */
static Py_ssize_t
write_head(uint8_t *head, uint8_t first, uint8_t mask_bit, Py_ssize_t length)
{
    head[0] = first;
    if (length < 126) {
        head[1] = mask_bit | (uint8_t)length;
        return 2;
    }
    if (length < 65536) {
        head[1] = mask_bit | 126;
        head[2] = (uint8_t)(length >> 8);
        head[3] = (uint8_t)length;
        return 4;
    }
    head[1] = mask_bit | 127;
    for (int i = 0; i < 8; i++)
        head[2 + i] = (uint8_t)((uint64_t)length >> (56 - 8 * i));
    return 10;
}

static PyObject *
unmasked(uint8_t first, const void *payload, Py_ssize_t length)
{
    uint8_t head[10];
    Py_ssize_t size = write_head(head, first, 0, length);
    PyObject *result = PyBytes_FromStringAndSize(NULL, size + length);
    if (result == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(result);
    memcpy(out, head, size);
    memcpy(out + size, payload, length);
    return result;
}

/* opcode | first as one byte, the way bytes((first | opcode, ...)) checks it. */
static int
first_byte(PyObject *opcode, PyObject *first, uint8_t *out)
{
    long op = PyLong_AsLong(opcode);
    if (op == -1 && PyErr_Occurred())
        return -1;
    long bits = first == NULL ? 0x80 : PyLong_AsLong(first);
    if (bits == -1 && PyErr_Occurred())
        return -1;
    long value = op | bits;
    if (op < 0 || bits < 0 || value > 255) {
        PyErr_SetString(PyExc_ValueError, "bytes must be in range(0, 256)");
        return -1;
    }
    *out = (uint8_t)value;
    return 0;
}

PyDoc_STRVAR(frame_doc,
"frame(opcode, payload, first=0x80) -> bytes\n\n"
"One unmasked frame; first carries the FIN and RSV bits.");

static PyObject *
frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "frame(opcode, payload, first=0x80) takes 2 or 3 arguments");
        return NULL;
    }
    uint8_t first;
    if (first_byte(args[0], nargs == 3 ? args[2] : NULL, &first) < 0)
        return NULL;
    Py_buffer payload;
    if (PyObject_GetBuffer(args[1], &payload, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *result = unmasked(first, payload.buf, payload.len);
    PyBuffer_Release(&payload);
    return result;
}

PyDoc_STRVAR(text_frame_doc,
"text_frame(text) -> bytes\n\n"
"The unmasked final frame of a text message (UnicodeEncodeError for a lone surrogate).");

static PyObject *
text_frame(PyObject *module, PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "text_frame() needs a str, not %.100s", Py_TYPE(text)->tp_name);
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) /* a legacy string (3.11 and older): make its data canonical */
        return NULL;
#endif
    if (PyUnicode_IS_ASCII(text)) /* the characters are the UTF-8 bytes: nothing to encode */
        return unmasked(0x81, PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text));
    /* Not PyUnicode_AsUTF8AndSize: it would keep a UTF-8 copy inside the str for its lifetime. */
    PyObject *encoded = PyUnicode_AsUTF8String(text);
    if (encoded == NULL)
        return NULL;
    PyObject *result = unmasked(0x81, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded));
    Py_DECREF(encoded);
    return result;
}

PyDoc_STRVAR(masked_frame_doc,
"masked_frame(opcode, payload, key) -> bytes\n\n"
"One final frame from a client: payload masked with the 4-byte key.");

static PyObject *
masked_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "masked_frame(opcode, payload, key) takes 3 arguments");
        return NULL;
    }
    uint8_t first;
    if (first_byte(args[0], NULL, &first) < 0)
        return NULL;
    Py_buffer payload, key;
    if (get_payload_and_key(args[1], args[2], &payload, &key) < 0)
        return NULL;
    uint8_t head[10];
    Py_ssize_t size = write_head(head, first, 0x80, payload.len);
    PyObject *result = PyBytes_FromStringAndSize(NULL, size + 4 + payload.len);
    if (result != NULL) {
        uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
        memcpy(out, head, size);
        memcpy(out + size, key.buf, 4);
        xor_copy(out + size + 4, payload.buf, payload.len, key.buf);
    }
    PyBuffer_Release(&payload);
    PyBuffer_Release(&key);
    return result;
}

/* ---------------------------------------------------------------- parsing */

/* A message of `kind` holding `data` (a new reference, taken over even on failure). */
static PyObject *
message(int kind, PyObject *data)
{
    if (data == NULL)
        return NULL;
    PyTypeObject *type = kinds[kind].type;
    PyObject *result = type->tp_alloc(type, 0);
    if (result == NULL) {
        Py_DECREF(data);
        return NULL;
    }
    *(PyObject **)((char *)result + kinds[kind].offset) = data;
    return result;
}

/* The payload's bytes, unmasked with `key` when there is one.
 *
 * `src` points into the bytearray being parsed. Reading it after an allocation is safe:
 * only allocating a GC-tracked object can run the garbage collector (and so a finaliser
 * that might touch the buffer), and bytes and str objects are not tracked; the one tracked
 * allocation, the message, comes after its payload is read, and parse() reads the
 * buffer's address and size again for each frame. */
static PyObject *
payload_bytes(const uint8_t *src, Py_ssize_t length, const uint8_t *key)
{
    if (key == NULL)
        return PyBytes_FromStringAndSize((const char *)src, length);
    PyObject *data = PyBytes_FromStringAndSize(NULL, length);
    if (data != NULL)
        xor_copy((uint8_t *)PyBytes_AS_STRING(data), src, length, key);
    return data;
}

/* The payload as str; NULL with no exception set when it is not valid UTF-8. */
static PyObject *
payload_text(const uint8_t *src, Py_ssize_t length, const uint8_t *key)
{
    uint8_t small[512];
    uint8_t *plain = (uint8_t *)src;
    if (key != NULL) {
        plain = length <= (Py_ssize_t)sizeof(small) ? small : PyMem_Malloc(length);
        if (plain == NULL)
            return PyErr_NoMemory();
        xor_copy(plain, src, length, key);
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)plain, length, "strict");
    if (plain != small && plain != src)
        PyMem_Free(plain);
    if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        PyErr_Clear();
    return text;
}

#define STOP(incomplete) do { stopped_incomplete = (incomplete); goto done; } while (0)

PyDoc_STRVAR(parse_doc,
"parse(buf, masked, limit, out) -> (consumed, incomplete)\n\n"
"Append the messages of the common frames at the start of the bytearray buf to the list\n"
"out; see ignitia_sync.sansio.framing_python.parse.");

static PyObject *
parse(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "parse(buf, masked, limit, out) takes 4 arguments");
        return NULL;
    }
    PyObject *buf = args[0], *out = args[3];
    if (!PyByteArray_Check(buf) || !PyList_Check(out)) {
        PyErr_SetString(PyExc_TypeError, "parse() needs a bytearray and a list");
        return NULL;
    }
    int masked = PyObject_IsTrue(args[1]);
    if (masked < 0)
        return NULL;
    int overflow;
    long long limit_value = PyLong_AsLongLongAndOverflow(args[2], &overflow);
    if (limit_value == -1 && PyErr_Occurred())
        return NULL;
    /* Python compares with an int of any size: beyond 63 bits, every length is under it. */
    long long limit = overflow > 0 ? LLONG_MAX : overflow < 0 ? -1 : limit_value;
    Py_ssize_t key_size = masked ? 4 : 0;
    uint8_t mask_bit = masked ? 0x80 : 0;
    Py_ssize_t pos = 0;
    int stopped_incomplete = 1;
    for (;;) {
        /* Read again each time: building a message may run arbitrary code (a finaliser). */
        const uint8_t *p = (const uint8_t *)PyByteArray_AS_STRING(buf);
        Py_ssize_t end = PyByteArray_GET_SIZE(buf);
        if (pos > end)
            STOP(1);
        if (end - pos < 2)
            STOP(1);
        uint8_t first = p[pos], second = p[pos + 1];
        unsigned long long length = second & 0x7F;
        Py_ssize_t start;
        if ((second & 0x80) != mask_bit || !(first == 0x81 || first == 0x82 || first == 0x89 || first == 0x8A))
            STOP(0);
        if (length < 126) {
            start = pos + 2 + key_size;
        } else if (first & 0x08) {
            STOP(0);
        } else if (length == 126) {
            if (end - pos < 4)
                STOP(1);
            length = ((unsigned long long)p[pos + 2] << 8) | p[pos + 3];
            start = pos + 4 + key_size;
            if (length < 126)
                STOP(0);
        } else {
            if (end - pos < 10)
                STOP(1);
            length = 0;
            for (int i = 0; i < 8; i++)
                length = (length << 8) | p[pos + 2 + i];
            start = pos + 10 + key_size;
            if (length < 65536 || length >> 63)
                STOP(0);
        }
        if ((long long)length > limit)
            STOP(0);
        if (start > end || (unsigned long long)(end - start) < length)
            STOP(1);
        const uint8_t *key = masked ? p + start - 4 : NULL;
        const uint8_t *src = p + start;
        Py_ssize_t size = (Py_ssize_t)length;
        PyObject *item;
        if (first == 0x81) {
            PyObject *text = payload_text(src, size, key);
            if (text == NULL) {
                if (PyErr_Occurred())
                    return NULL;
                STOP(0); /* not UTF-8: wsproto fails it with 1007 */
            }
            item = message(TEXT, text);
        } else {
            item = message(first == 0x82 ? BINARY : first == 0x89 ? PING : PONG, payload_bytes(src, size, key));
        }
        if (item == NULL)
            return NULL;
        int appended = PyList_Append(out, item);
        Py_DECREF(item);
        if (appended < 0)
            return NULL;
        pos = start + size;
    }
done:
    return Py_BuildValue("(nO)", pos, stopped_incomplete ? Py_True : Py_False);
}

/* ---------------------------------------------------------------- module */

static PyMethodDef methods[] = {
    {"parse", (PyCFunction)(void (*)(void))parse, METH_FASTCALL, parse_doc},
    {"frame", (PyCFunction)(void (*)(void))frame, METH_FASTCALL, frame_doc},
    {"text_frame", text_frame, METH_O, text_frame_doc},
    {"masked_frame", (PyCFunction)(void (*)(void))masked_frame, METH_FASTCALL, masked_frame_doc},
    {"unmask", (PyCFunction)(void (*)(void))unmask, METH_FASTCALL, unmask_doc},
    {NULL, NULL, 0, NULL},
};

/* Find the class's one `data` slot; refuse a class that gained fields or a __post_init__. */
static int
load_kind(PyObject *messages, int kind)
{
    /* Every lookup that fails is one more way to be the wrong shape: cleared, and answered
     * with the one ImportError below (framing.py catches only that, and falls back). */
    PyObject *type = PyObject_GetAttrString(messages, kind_names[kind]);
    PyErr_Clear();
    PyObject *fields = type != NULL ? PyObject_GetAttrString(type, "__dataclass_fields__") : NULL;
    PyErr_Clear();
    Py_ssize_t count = fields != NULL && PyDict_Check(fields) ? PyDict_Size(fields) : -1;
    Py_XDECREF(fields);
    PyObject *descriptor = type != NULL ? PyObject_GetAttrString(type, "data") : NULL;
    PyErr_Clear();
    int is_own_slot = descriptor != NULL && Py_IS_TYPE(descriptor, &PyMemberDescr_Type)
                      && (PyObject *)((PyMemberDescrObject *)descriptor)->d_common.d_type == type;
    PyMemberDef *member = is_own_slot ? ((PyMemberDescrObject *)descriptor)->d_member : NULL;
    Py_XDECREF(descriptor);
    int post_init = type != NULL && PyObject_HasAttrString(type, "__post_init__");
    if (type == NULL || !PyType_Check(type) || count != 1 || member == NULL || member->type != T_OBJECT_EX
        || (member->flags & READONLY) || post_init) {
        Py_XDECREF(type);
        PyErr_Format(PyExc_ImportError,
                     "ignitia_sync.message.%s is no longer a dataclass with one slot, data: "
                     "the accelerator cannot build it",
                     kind_names[kind]);
        return -1;
    }
    kinds[kind].type = (PyTypeObject *)type; /* kept for the process's lifetime */
    kinds[kind].offset = member->offset;
    return 0;
}

static int
exec_module(PyObject *module)
{
    PyObject *messages = PyImport_ImportModule("ignitia_sync.message");
    if (messages == NULL)
        return -1;
    for (int kind = 0; kind < KINDS; kind++) {
        if (kinds[kind].type == NULL && load_kind(messages, kind) < 0) {
            Py_DECREF(messages);
            return -1;
        }
    }
    Py_DECREF(messages);
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
#ifdef Py_mod_multiple_interpreters
    /* the message classes are kept in static variables: one interpreter per process */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ignitia_sync.sansio._framing",
    .m_doc = "The per-message frame work in C: the twin of ignitia_sync.sansio.framing_python.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__framing(void)
{
    return PyModuleDef_Init(&module_def);
}
