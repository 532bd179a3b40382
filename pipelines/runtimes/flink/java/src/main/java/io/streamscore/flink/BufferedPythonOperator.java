package io.streamscore.flink;

import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.BasicTypeInfo;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.runtime.state.VoidNamespaceSerializer;
import org.apache.flink.streaming.api.operators.BoundedOneInput;
import org.apache.flink.streaming.api.operators.InternalTimer;
import org.apache.flink.streaming.api.operators.InternalTimerService;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.operators.Triggerable;
import org.apache.flink.streaming.api.operators.python.embedded.AbstractEmbeddedPythonFunctionOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The buffering keyed operator of streamscore's Flink runtime: one Python call per buffer of records.
 *
 * <p>Input: the keyed stream of {@code Row(k, Row(value, topic, partition, offset, timestamp_ms, key))} (keyed by
 * {@code Row(k)}, PyFlink's {@code KeyByKeySelector}). Records are buffered up to {@code maxBuffer} records or the
 * bundle time ({@code python.fn-execution.bundle.time}, checked by the base class's timer); the buffer is flushed
 * before every checkpoint barrier ({@code prepareSnapshotPreBarrier}), at end of input ({@code finish}) and before
 * a timer fires, so a checkpoint never holds buffered records and timers see every earlier record applied.
 *
 * <p>Per buffer the operator reads, for each distinct key, the versioned state's head ({@code <name>/h2}) and the
 * latest version record it points at ({@code <name>/slots}) from Flink keyed state, calls the Python step
 * ({@code pipelines.runtimes.flink.buffered.BufferedStep.process}) once with the records and those reads, then
 * applies what Python returns: state writes (heads, version records, side entries, deletes, timers) in order,
 * and output rows (results, dead letters, state changelog rows) in record order. Whatever else Python needs (a
 * side entry, an older version, a key in an earlier layout) it reads through {@link StateReader}.
 *
 * <p>The keyed states have the names and types PyFlink's keyed function declares for the same layout
 * ({@code state.flink_state}), and timers use the same timer service ("user-timers", void namespace), so a
 * savepoint of the per-record job restores into this operator at the same uid.
 */
public final class BufferedPythonOperator extends AbstractEmbeddedPythonFunctionOperator<Row>
        implements OneInputStreamOperator<Row, Row>, Triggerable<Row, VoidNamespace>, BoundedOneInput {

    private static final long serialVersionUID = 1L;

    private static final String STEP = "streamscore_step";
    private static final long METRICS_FLUSH_MS = 1000;
    private static final long STATS_LOG_MS = 10_000;
    private static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();

    // Write operations returned by Python: (key, code, a, b) quadruples.
    static final int HEAD_PUT = 1;
    static final int HEAD_CLEAR = 2;
    static final int SLOTS_CLEAR = 3;
    static final int SLOT_PUT = 4;
    static final int SIDES_CLEAR = 5;
    static final int SIDE_PUT = 6;
    static final int SIDE_REMOVE = 7;
    static final int OLD_CLEAR = 8;
    static final int TIMER = 9;

    // Output rows returned by Python: (tag, k, v) triples.
    static final int RESULT = 0;
    static final int DEAD_LETTER = 1;
    static final int CHANGELOG = 2;

    private final String stateName;
    private final String stepArguments;
    private final int maxBuffer;
    private final boolean prefetch;
    private final int cachedKeys;
    private final OutputTag<Row> deadLetterTag;
    private final OutputTag<Row> changelogTag;

    private transient ValueState<byte[]> heads;
    private transient MapState<Long, byte[]> slots;
    private transient MapState<String, byte[]> sides;
    private transient ValueState<byte[]> oldHeads;
    private transient ListState<byte[]> oldHistories;
    private transient ValueState<byte[]> oldBlobs;
    private transient InternalTimerService<VoidNamespace> timers;

    private transient byte[][] values;
    private transient String[] topics;
    private transient int[] partitions;
    private transient long[] offsets;
    private transient long[] stamps;
    private transient String[] keys;
    private transient int size;
    private transient Map<String, Row> keyRows;
    private transient long nextMetricsFlush;
    private transient PythonCacheMirror pythonCache;
    private transient StreamRecord<Row> reuse;
    private transient long buffers;
    private transient long records;
    private transient long readNanos;
    private transient long pythonNanos;
    private transient long applyNanos;
    private transient long pythonCpuNanos;
    private transient long[] logged;
    private transient long nextStatsLog;

    /**
     * @param config the job's configuration (Python settings: executable, paths, bundle time)
     * @param stateName the versioned state's name prefix (the pipeline's name)
     * @param stepArguments JSON arguments of the Python step (pipeline, model, config path, changelog, ...)
     * @param maxBuffer the most records per Python call
     * @param prefetch whether to read the buffer's heads and latest records before the call (else Python asks
     *     for the keys its head cache misses, through {@link StateReader})
     * @param cachedKeys the size of Python's head cache (first in, first out): keys it holds are not pre-read
     * @param deadLetterTag the dead-letter side output
     * @param changelogTag the state-changelog side output (null: no changelog)
     */
    public BufferedPythonOperator(
            Configuration config,
            String stateName,
            String stepArguments,
            int maxBuffer,
            boolean prefetch,
            int cachedKeys,
            OutputTag<Row> deadLetterTag,
            OutputTag<Row> changelogTag) {
        super(config);
        if (maxBuffer < 1) {
            throw new IllegalArgumentException("maxBuffer must be >= 1, got " + maxBuffer);
        }
        this.stateName = stateName;
        this.stepArguments = stepArguments;
        this.maxBuffer = maxBuffer;
        this.prefetch = prefetch;
        this.cachedKeys = cachedKeys;
        this.deadLetterTag = deadLetterTag;
        this.changelogTag = changelogTag;
    }

    @Override
    public void open() throws Exception {
        PrimitiveArrayTypeInfo<byte[]> bytes = PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO;
        heads = getRuntimeContext().getState(new ValueStateDescriptor<>(stateName + "/h2", bytes));
        slots = getRuntimeContext().getMapState(
                new MapStateDescriptor<>(stateName + "/slots", BasicTypeInfo.LONG_TYPE_INFO, bytes));
        sides = getRuntimeContext().getMapState(
                new MapStateDescriptor<>(stateName + "/side", BasicTypeInfo.STRING_TYPE_INFO, bytes));
        oldHeads = getRuntimeContext().getState(new ValueStateDescriptor<>(stateName + "/head", bytes));
        oldHistories = getRuntimeContext().getListState(new ListStateDescriptor<>(stateName + "/history", bytes));
        oldBlobs = getRuntimeContext().getState(new ValueStateDescriptor<>(stateName + "/versions", bytes));
        timers = getInternalTimerService("user-timers", VoidNamespaceSerializer.INSTANCE, this);
        values = new byte[maxBuffer][];
        topics = new String[maxBuffer];
        partitions = new int[maxBuffer];
        offsets = new long[maxBuffer];
        stamps = new long[maxBuffer];
        keys = new String[maxBuffer];
        keyRows = new LinkedHashMap<>();
        pythonCache = new PythonCacheMirror(cachedKeys);
        reuse = new StreamRecord<>(null);
        nextMetricsFlush = System.currentTimeMillis() + METRICS_FLUSH_MS;
        logged = new long[6];
        nextStatsLog = nextMetricsFlush + STATS_LOG_MS;
        super.open();
    }

    @Override
    public void openPythonInterpreter() {
        interpreter.set("_streamscore_arguments", stepArguments);
        interpreter.set("_streamscore_metrics", getRuntimeContext().getMetricGroup());
        interpreter.set("_streamscore_reader", new StateReader());
        interpreter.exec("from pipelines.runtimes.flink.buffered import BufferedStep");
        interpreter.exec(
                STEP + " = BufferedStep(_streamscore_arguments, _streamscore_metrics, _streamscore_reader)");
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row row = element.getValue();
        Row record = (Row) row.getField(1);
        String key = (String) row.getField(0);
        int i = size;
        byte[] value = (byte[]) record.getField(0);
        values[i] = value == null ? null : value.clone(); // object reuse: never keep the upstream's array
        topics[i] = (String) record.getField(1);
        Integer partition = (Integer) record.getField(2);
        partitions[i] = partition == null ? -1 : partition;
        Long offset = (Long) record.getField(3);
        offsets[i] = offset == null ? -1 : offset;
        Long stamp = (Long) record.getField(4);
        stamps[i] = stamp == null ? -1 : stamp;
        keys[i] = key;
        if (!keyRows.containsKey(key)) {
            keyRows.put(key, (Row) getCurrentKey());
        }
        size = i + 1;
        elementCount = size;
        if (size >= maxBuffer) {
            invokeFinishBundle();
        }
    }

    @Override
    public void endInput() throws Exception {
        invokeFinishBundle();
    }

    @Override
    protected void invokeFinishBundle() throws Exception {
        if (size == 0) {
            long now = System.currentTimeMillis();
            if (now >= nextMetricsFlush && interpreter != null) {
                nextMetricsFlush = now + METRICS_FLUSH_MS;
                interpreter.invokeMethod(STEP, "flush_metrics");
            }
            return;
        }
        int n = size;
        long started = System.nanoTime();
        List<String> wanted = new ArrayList<>();
        if (prefetch) {
            for (String key : keyRows.keySet()) {
                if (!pythonCache.holds(key)) {
                    wanted.add(key);
                }
            }
        }
        int d = wanted.size();
        String[] distinct = new String[d];
        byte[][] headBytes = new byte[d][];
        byte[][] latest = new byte[d][];
        int[] status = new int[d];
        for (int j = 0; j < d; j++) {
            String key = wanted.get(j);
            distinct[j] = key;
            setCurrentKey(keyRows.get(key));
            byte[] head = heads.value();
            headBytes[j] = head;
            if (head != null) {
                status[j] = 1;
                long slot = latestSlot(head);
                if (slot >= 0) {
                    latest[j] = slots.get(slot);
                }
            } else if (oldHeads.value() != null || oldBlobs.value() != null) {
                status[j] = 2; // state of an earlier layout: Python converts it through the reader
            }
        }
        for (String key : keyRows.keySet()) {
            pythonCache.touch(key);
        }
        long read = System.nanoTime();
        long cpuBefore = THREADS.getCurrentThreadCpuTime();
        Object answer;
        try {
            answer = interpreter.invokeMethod(
                    STEP, "process",
                    Arrays.copyOf(values, n), Arrays.copyOf(topics, n), Arrays.copyOf(partitions, n),
                    Arrays.copyOf(offsets, n), Arrays.copyOf(stamps, n), Arrays.copyOf(keys, n),
                    distinct, headBytes, latest, status);
        } finally {
            Arrays.fill(values, 0, n, null);
            size = 0;
            elementCount = 0;
            lastFinishBundleTime = getProcessingTimeService().getCurrentProcessingTime();
        }
        long called = System.nanoTime();
        pythonCpuNanos += THREADS.getCurrentThreadCpuTime() - cpuBefore;
        apply(answer, keyRows);
        keyRows.clear();
        long applied = System.nanoTime();
        buffers++;
        records += n;
        readNanos += read - started;
        pythonNanos += called - read;
        applyNanos += applied - called;
        long now = System.currentTimeMillis();
        nextMetricsFlush = now + METRICS_FLUSH_MS;
        if (now >= nextStatsLog) {
            logStats(now);
        }
        if (bundleFinishedCallback != null) {
            bundleFinishedCallback.run();
            bundleFinishedCallback = null;
        }
    }

    /** Logs the buffers of the last interval: how many, their mean size, and the time per record of each phase. */
    private void logStats(long now) {
        long b = buffers - logged[0];
        long r = records - logged[1];
        if (b > 0 && r > 0) {
            LOG.info(
                    "last {} s: {} buffers, {} records ({} per buffer); per record: state reads {} us, Python {} us "
                            + "({} us of this thread's CPU), writes and output {} us",
                    (now - nextStatsLog + STATS_LOG_MS) / 1000, b, r, r / b, (readNanos - logged[2]) / 1000 / r,
                    (pythonNanos - logged[3]) / 1000 / r, (pythonCpuNanos - logged[5]) / 1000 / r,
                    (applyNanos - logged[4]) / 1000 / r);
        }
        logged = new long[] {buffers, records, readNanos, pythonNanos, applyNanos, pythonCpuNanos};
        nextStatsLog = now + STATS_LOG_MS;
    }

    /** The slot of the head's latest version record, or -1 (a deleted key, or a head this code cannot read). */
    static long latestSlot(byte[] head) {
        if (head.length < 30 || head[0] != 2 || (head[1] & 1) != 0) {
            return -1;
        }
        long latest = 0;
        for (int i = 2; i < 10; i++) {
            latest = (latest << 8) | (head[i] & 0xFF);
        }
        long ring = 0;
        for (int i = 26; i < 30; i++) {
            ring = (ring << 8) | (head[i] & 0xFF);
        }
        return ring == 0 ? latest : Long.remainderUnsigned(latest, ring);
    }

    @Override
    public void onProcessingTime(InternalTimer<Row, VoidNamespace> timer) throws Exception {
        Row key = timer.getKey();
        invokeFinishBundle(); // every earlier record is applied before the key's timer looks at its state
        setCurrentKey(key);
        String name = (String) key.getField(0);
        Object answer = interpreter.invokeMethod(STEP, "on_timer", name, timer.getTimestamp());
        Map<String, Row> known = new LinkedHashMap<>();
        known.put(name, key);
        apply(answer, known);
    }

    @Override
    public void onEventTime(InternalTimer<Row, VoidNamespace> timer) {
        // streamscore registers processing-time timers only
    }

    /**
     * Applies what Python returned: {@code Object[] {rows, writes}}, two byte strings packed as
     * {@code pipelines/runtimes/flink/buffer_wire.py} describes: the state writes first (in order), then the rows.
     */
    private void apply(Object answer, Map<String, Row> known) throws Exception {
        Object[] parts = (Object[]) answer;
        applyWrites(ByteBuffer.wrap((byte[]) parts[1]), known);
        applyRows(ByteBuffer.wrap((byte[]) parts[0]));
    }

    private void applyWrites(ByteBuffer ops, Map<String, Row> known) throws Exception {
        String current = null;
        while (ops.hasRemaining()) {
            int keyLength = ops.getInt();
            int code = ops.get();
            String key = utf8(ops, keyLength);
            if (!key.equals(current)) {
                Row keyRow = known.get(key);
                setCurrentKey(keyRow != null ? keyRow : Row.of(key));
                current = key;
            }
            switch (code) {
                case HEAD_PUT: heads.update(bytes(ops, ops.getInt())); break;
                case HEAD_CLEAR: heads.clear(); break;
                case SLOTS_CLEAR: slots.clear(); break;
                case SLOT_PUT: {
                    long slot = ops.getLong();
                    slots.put(slot, bytes(ops, ops.getInt()));
                    break;
                }
                case SIDES_CLEAR: sides.clear(); break;
                case SIDE_PUT: {
                    String name = utf8(ops, ops.getInt());
                    sides.put(name, bytes(ops, ops.getInt()));
                    break;
                }
                case SIDE_REMOVE: sides.remove(utf8(ops, ops.getInt())); break;
                case OLD_CLEAR: oldHeads.clear(); oldHistories.clear(); oldBlobs.clear(); break;
                case TIMER:
                    timers.registerProcessingTimeTimer(VoidNamespace.INSTANCE, ops.getLong());
                    break;
                default: throw new IllegalStateException("unknown state operation " + code + " from Python");
            }
        }
    }

    private void applyRows(ByteBuffer rows) {
        while (rows.hasRemaining()) {
            int tag = rows.get();
            int keyLength = rows.getInt();
            int valueLength = rows.getInt();
            String key = keyLength < 0 ? null : utf8(rows, keyLength);
            byte[] value = valueLength < 0 ? null : bytes(rows, valueLength);
            if (tag == RESULT) {
                output.collect(reuse.replace(Row.of(key, new String(value, StandardCharsets.UTF_8))));
            } else if (tag == DEAD_LETTER) {
                output.collect(deadLetterTag, new StreamRecord<>(Row.of(key, new String(value, StandardCharsets.UTF_8))));
            } else if (changelogTag != null) {
                output.collect(changelogTag, new StreamRecord<>(Row.of(key, value)));
            }
        }
    }

    private static String utf8(ByteBuffer buffer, int length) {
        String found = new String(buffer.array(), buffer.arrayOffset() + buffer.position(), length, StandardCharsets.UTF_8);
        buffer.position(buffer.position() + length);
        return found;
    }

    private static byte[] bytes(ByteBuffer buffer, int length) {
        byte[] found = new byte[length];
        buffer.get(found);
        return found;
    }

    @Override
    public void close() throws Exception {
        if (buffers > 0) {
            LOG.info(
                    "{} buffers, {} records ({} per buffer); per record: state reads {} us, Python {} us ({} us of "
                            + "this thread's CPU), writes and output {} us",
                    buffers, records, records / buffers, readNanos / 1000 / records, pythonNanos / 1000 / records,
                    pythonCpuNanos / 1000 / records, applyNanos / 1000 / records);
        }
        try {
            if (interpreter != null) {
                interpreter.invokeMethod(STEP, "close");
            }
        } finally {
            super.close();
        }
    }

    /**
     * Which keys Python's head cache ({@code state.flink_state}, first in, first out) holds, as far as Java can
     * tell: a key enters when a buffer carries it, the oldest leaves past the capacity. A key Python holds needs no
     * pre-read; a wrong guess only costs Python one read through {@link StateReader} (never a wrong answer).
     */
    static final class PythonCacheMirror {
        private final int capacity;
        private final LinkedHashMap<String, Boolean> keys = new LinkedHashMap<>();

        PythonCacheMirror(int capacity) {
            this.capacity = capacity;
        }

        boolean holds(String key) {
            return keys.containsKey(key);
        }

        void touch(String key) {
            if (capacity <= 0 || keys.containsKey(key)) {
                return;
            }
            if (keys.size() >= capacity) {
                keys.remove(keys.keySet().iterator().next());
            }
            keys.put(key, Boolean.TRUE);
        }
    }

    /** What Python reads from Flink keyed state beyond a buffer's pre-read heads (called from Python). */
    public final class StateReader {

        private void select(String key) {
            Row row = keyRows.get(key);
            setCurrentKey(row != null ? row : Row.of(key));
        }

        /** The key's head ({@code <name>/h2}), or null. */
        public byte[] head(String key) throws Exception {
            select(key);
            return heads.value();
        }

        /** The version record at {@code slot}, or null. */
        public byte[] slot(String key, long slot) throws Exception {
            select(key);
            return slots.get(slot);
        }

        /** The slots holding records (a diagnostic). */
        public Object[] slotNumbers(String key) throws Exception {
            select(key);
            List<Object> found = new ArrayList<>();
            for (Long slot : slots.keys()) {
                found.add(slot);
            }
            return found.toArray();
        }

        /** The separate side entry {@code name}, or null. */
        public byte[] side(String key, String name) throws Exception {
            select(key);
            return sides.get(name);
        }

        /** The key's layout-1 head, or null. */
        public byte[] oldHead(String key) throws Exception {
            select(key);
            return oldHeads.value();
        }

        /** The key's layout-1 history records. */
        public Object[] oldHistory(String key) throws Exception {
            select(key);
            List<Object> found = new ArrayList<>();
            Iterable<byte[]> records = oldHistories.get();
            if (records != null) {
                for (byte[] record : records) {
                    found.add(record);
                }
            }
            return found.toArray();
        }

        /** The key's blob of the first layout, or null. */
        public byte[] oldBlob(String key) throws Exception {
            select(key);
            return oldBlobs.value();
        }
    }
}
