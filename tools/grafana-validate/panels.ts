// The shapes a dashboard of this repository must have, built from @grafana/schema: the
// dashboard as Grafana's schema describes it, and each panel typed by its plugin's own options
// and field config, its queries as Prometheus queries, and its data links.
//
// Grafana's generated types use TypeScript enums (ThresholdsMode, LegendDisplayMode, ...), which
// no JSON value can be; Json<T> is the same type with every string enum replaced by the union of
// its values, i.e. what the JSON file may contain.
import type { DataSourceRef, Dashboard, FieldConfig, FieldConfigSource, Panel } from '@grafana/schema';
import type * as BarGauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import type * as Heatmap from '@grafana/schema/dist/esm/raw/composable/heatmap/panelcfg/x/HeatmapPanelCfg_types.gen';
import type * as Stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as Table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as Text from '@grafana/schema/dist/esm/raw/composable/text/panelcfg/x/TextPanelCfg_types.gen';
import type * as TimeSeries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

export type Json<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends readonly (infer U)[]
      ? Json<U>[]
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

export type DashboardJson = Json<Dashboard>;

// A Prometheus query (Grafana's Prometheus data source, PromQuery): the schema package types
// targets only as Record<string, unknown>.
export interface PromQuery {
  refId: string;
  datasource?: { type: 'prometheus'; uid: string };
  expr: string;
  legendFormat?: string;
  range?: boolean;
  instant?: boolean;
  exemplar?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
  interval?: string;
  intervalFactor?: number;
  editorMode?: 'code' | 'builder';
  hide?: boolean;
}

// A data link (@grafana/data DataLink); FieldConfig.links is Array<unknown> in the schema.
export interface DataLink {
  title: string;
  url: string;
  targetBlank?: boolean;
  internal?: {
    datasourceUid: string;
    datasourceName: string;
    query: Record<string, unknown>;
  };
}

type Defaults<C> = Omit<FieldConfig<C>, 'links'> & { links?: DataLink[] };
type Fields<C> = Omit<FieldConfigSource<C>, 'defaults'> & { defaults: Defaults<C> };

// Grafana fills in every option a panel leaves out, so options may be partial; those given
// must be right.
type Typed<T extends string, Options, Custom = Record<string, unknown>> = Omit<
  Panel,
  'type' | 'options' | 'targets' | 'fieldConfig' | 'datasource'
> & {
  type: T;
  datasource?: DataSourceRef;
  options?: Partial<Options>;
  fieldConfig?: Fields<Custom>;
  targets?: PromQuery[];
};

export type TypedPanel = Json<
  | Typed<'timeseries', TimeSeries.Options, TimeSeries.FieldConfig>
  | Typed<'stat', Stat.Options>
  | Typed<'bargauge', BarGauge.Options>
  | Typed<'table', Table.Options, Table.FieldConfig>
  | Typed<'heatmap', Heatmap.Options, Heatmap.FieldConfig>
  | Typed<'text', Text.Options>
>;

// One panel type's shape, so the compiler reports against that type rather than the closest
// member of the union; an unknown type is `never`, which nothing satisfies.
export type PanelOf<T extends string> = Extract<TypedPanel, { type: T }>;
