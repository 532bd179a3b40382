package io.streamscore.flink;

import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.types.Row;

/**
 * The identity on rows. The buffered job puts it where PyFlink's {@code DataStream.get_side_output} puts its Python
 * identity map in the per-record job, so both job graphs have the same shape and Flink derives the same operator
 * ids for the sinks behind the side outputs: a savepoint of either job restores into the other.
 */
public final class SameRow implements MapFunction<Row, Row> {

    private static final long serialVersionUID = 1L;

    @Override
    public Row map(Row row) {
        return row;
    }
}
